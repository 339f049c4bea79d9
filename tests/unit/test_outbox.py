"""Every record the decider produces fits, and a record Kafka refuses for good never wedges a batch.

The real KafkaOutbox and BatchProducer run over a fake confluent-kafka Producer (tests/unit/fake_kafka.py)
that enforces message.max.bytes like librdkafka and lets a test script the broker's answers.
"""
from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from app.adapters.avro.mapping import decode_ledger_entry, encode_event
from app.adapters.kafka.connection import KafkaConnection
from app.adapters.kafka.outbox import KafkaOutbox, OutputTopics
from app.adapters.kafka.producer import BatchProducer, OutRecord, PublishError, record_size
from app.domain.history import ACCEPTED, REJECTED, Source, StoredDecision
from app.service.ports import DeadLetter, InputMessage
from tests.support import fake_kafka
from tests.support.domain_builders import T0, acquire, event

TOPICS = OutputTopics("ledger", "rejections", "dlq")


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def broker(monkeypatch):
    return fake_kafka.install(monkeypatch)


def headers_of(record) -> dict[str, bytes]:
    return dict(record[3])


def message(value: bytes | None, key: bytes | None = b"m1", offset: int = 0, headers=()) -> InputMessage:
    return InputMessage("events", 0, offset, key, value, tuple(headers))


# --- the producer knows its limit ------------------------------------------------------------------


def test_record_size_is_what_librdkafka_counts_against_message_max_bytes():
    """The real librdkafka checks the size in produce() without a broker: a record of exactly the limit
    is accepted, one byte more is refused."""
    limit = 10_000
    p = Producer({"bootstrap.servers": "127.0.0.1:1", "message.max.bytes": limit, "log_level": 0})
    try:
        for key, headers in [(None, ()), (b"m-1", ()), (b"k" * 300, (("error.detail", b"d" * 2000),)),
                             (b"m", (("a", b"x" * 63), ("b", b"y" * 64), ("c", b""), ("h" * 70, b"z" * 8192)))]:
            empty = record_size(OutRecord("t", key, b"", headers))
            fits = OutRecord("t", key, b"v" * (limit - empty), headers)
            assert record_size(fits) == limit
            p.produce("t", fits.value, fits.key, headers=list(headers) or None)
            with pytest.raises(KafkaException) as exc:
                p.produce("t", fits.value + b"!", fits.key, headers=list(headers) or None)
            assert exc.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    finally:
        p.purge()


def test_the_producer_limit_is_a_setting_passed_to_librdkafka_and_exposed(broker):
    from app.bootstrap import producer
    from app.config import Settings

    assert BatchProducer(KafkaConnection("fake:9092")).max_message_bytes == 1_000_000
    p = producer(Settings(kafka_max_message_bytes=2_000_000))
    assert p.max_message_bytes == 2_000_000
    assert broker.producers[-1].config["message.max.bytes"] == 2_000_000
    assert BatchProducer(KafkaConnection("fake:9092"), **{"message.max.bytes": 500_000}).max_message_bytes == 500_000


# --- dead letters are sized -----------------------------------------------------------------------


def test_a_dead_letter_that_fits_keeps_the_original_bytes_and_headers(broker):
    outbox = KafkaOutbox(BatchProducer(KafkaConnection("fake:9092")), TOPICS)
    value = os.urandom(900_000)
    m = message(value, headers=[("trace-id", b"abc")])
    report = run(outbox.publish([], [DeadLetter(m, "undecodable", "bad_marker", "no marker")]))
    [(_, key, got, headers)] = broker.on("dlq")
    h = dict(headers)
    assert got == value and key == b"m1" and h["trace-id"] == b"abc"
    assert not any(k.startswith("dlq.") for k in h) and report.truncated == 0


def test_a_dead_letter_with_a_huge_key_and_huge_headers_still_fits(broker):
    outbox = KafkaOutbox(BatchProducer(KafkaConnection("fake:9092"), max_message_bytes=100_000), TOPICS)
    value, key = os.urandom(60_000), b"k" * 120_000
    m = message(value, key=key, headers=[("h1", b"x" * 70_000), ("h2", b"y" * 70_000)])
    run(outbox.publish([], [DeadLetter(m, "malformed", "key_mismatch", "x" * 10_000)]))
    [(_, got_key, got, headers)] = broker.on("dlq")
    h = dict(headers)
    assert fake_kafka.wire_size(got_key, got, headers) <= 100_000
    assert h["dlq.truncated"] == b"true" and h["dlq.original_size"] == b"60000"
    assert h["dlq.headers_dropped"] == b"2" and "h1" not in h
    assert h["dlq.key_truncated"] == b"true" and h["dlq.original_key_size"] == b"120000"
    assert h["dlq.original_key_sha256"] == hashlib.sha256(key).hexdigest().encode()
    assert key.startswith(got_key) and value.startswith(got)
    assert len(h["error.detail"]) <= 2000 and h["error.code"] == b"key_mismatch"


# --- ledger entries and rejections that cannot fit ------------------------------------------------


def _decision(kind: str, producer: str = "svc", seq: int = 1, offset: int = 7) -> StoredDecision:
    ev = event(acquire("l1"), at=T0)
    ev = type(ev)(ev.event_id, ev.member_id, ev.occurred_at, producer, ev.payload)
    if kind == ACCEPTED:
        return StoredDecision(seq, 0, ACCEPTED, ev, T0, Source("events", 0, offset))
    return StoredDecision(seq, 1, REJECTED, ev, T0, Source("events", 0, offset), "DEVICE_LIMIT", "d" * 3000)


@pytest.mark.parametrize("kind,topic", [(ACCEPTED, "ledger"), (REJECTED, "rejections")])
def test_an_output_over_the_limit_becomes_a_dead_letter_of_its_input(broker, kind, topic):
    outbox = KafkaOutbox(BatchProducer(KafkaConnection("fake:9092"), max_message_bytes=2_500), TOPICS)
    d = _decision(kind, producer="p" * 2_400)
    source_bytes = encode_event(d.event)
    inputs = {d.source: InputMessage("events", 0, 7, b"m1", source_bytes, (("trace-id", b"t"),))}
    small = _decision(ACCEPTED, seq=2, offset=8)

    report = run(outbox.publish([("m1", d), ("m1", small)], [], inputs))

    assert not broker.on(topic if kind == REJECTED else "rejections")
    assert [decode_ledger_entry(v).recorded.seq for _, _, v, _ in broker.on("ledger")] == [2]
    [(_, key, value, headers)] = broker.on("dlq")
    h = dict(headers)
    assert key == b"m1" and h["error.code"] == b"output_too_large" and h["error.kind"] == b"unpublishable"
    assert h["source.offset"] == b"7" and h["trace-id"] == b"t"
    assert h["dlq.original_sha256"] == hashlib.sha256(source_bytes).hexdigest().encode()
    assert source_bytes.startswith(value)
    assert b"event store" in h["error.detail"]
    assert report.diverted == {"output_too_large": 1}


def test_an_output_whose_input_is_not_in_the_batch_is_dead_lettered_from_its_event(broker):
    """A republished duplicate's source is an earlier offset: the dead letter carries the event re-encoded."""
    outbox = KafkaOutbox(BatchProducer(KafkaConnection("fake:9092"), max_message_bytes=2_500), TOPICS)
    d = _decision(ACCEPTED, producer="p" * 2_400)
    run(outbox.publish([("m1", d)], []))
    [(_, _, _, headers)] = broker.on("dlq")
    h = dict(headers)
    assert h["error.code"] == b"output_too_large" and h["dlq.reencoded"] == b"true"
    assert h["dlq.original_sha256"] == hashlib.sha256(encode_event(d.event)).hexdigest().encode()


# --- records the cluster refuses for a permanent reason ------------------------------------------


def test_a_dead_letter_the_broker_refuses_becomes_headers_only_and_its_batch_mates_are_published(broker):
    """A broker fails a whole batch for one record over the topic's max.message.bytes (measured on
    Kafka 4.1): the innocent records of that batch are published again on their own."""
    broker.topic_max_bytes["dlq"] = 50_000
    outbox = KafkaOutbox(BatchProducer(KafkaConnection("fake:9092")), TOPICS)
    big = os.urandom(400_000)
    letters = [DeadLetter(message(b"small-1", offset=1), "undecodable", "bad_marker", "x"),
               DeadLetter(message(big, offset=2), "undecodable", "bad_marker", "x"),
               DeadLetter(message(b"small-3", offset=3), "undecodable", "bad_marker", "x")]

    report = run(outbox.publish([("m1", _decision(ACCEPTED))], letters))

    dlq = broker.on("dlq")
    assert sorted(v for _, _, v, _ in dlq if v) == [b"small-1", b"small-3"]
    [refused] = [r for r in dlq if r[2] is None]
    h = headers_of(refused)
    assert h["error.code"] == b"unpublishable" and h["dlq.original_code"] == b"bad_marker"
    assert h["source.offset"] == b"2" and h["dlq.original_size"] == b"400000"
    assert h["dlq.original_sha256"] == hashlib.sha256(big).hexdigest().encode()
    assert b"MSG_SIZE_TOO_LARGE" in h["error.detail"] or b"too large" in h["error.detail"]
    assert len(broker.on("ledger")) == 1
    assert report.diverted == {"unpublishable": 1}


@pytest.mark.parametrize("code", [KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD,
                                  KafkaError.RECORD_LIST_TOO_LARGE])
def test_a_ledger_entry_refused_for_a_permanent_reason_becomes_an_unpublishable_dead_letter(broker, code):
    broker.refuse_topics["ledger"] = KafkaError(code)
    outbox = KafkaOutbox(BatchProducer(KafkaConnection("fake:9092")), TOPICS)
    d = _decision(ACCEPTED)
    inputs = {d.source: InputMessage("events", 0, 7, b"m1", encode_event(d.event), ())}
    report = run(outbox.publish([("m1", d)], [], inputs))
    [(_, _, value, headers)] = broker.on("dlq")
    h = dict(headers)
    assert h["error.code"] == b"unpublishable" and value == encode_event(d.event)
    assert report.diverted == {"unpublishable": 1}


def test_produce_raising_a_permanent_error_dead_letters_that_record_only(broker):
    broker.produce_errors.append(KafkaError(KafkaError.INVALID_RECORD))
    outbox = KafkaOutbox(BatchProducer(KafkaConnection("fake:9092")), TOPICS)
    first, second = _decision(ACCEPTED, seq=1, offset=1), _decision(ACCEPTED, seq=2, offset=2)
    report = run(outbox.publish([("m1", first), ("m1", second)], []))
    assert [decode_ledger_entry(v).recorded.seq for _, _, v, _ in broker.on("ledger")] == [2]
    assert [headers_of(r)["source.offset"] for r in broker.on("dlq")] == [b"1"]
    assert report.diverted == {"unpublishable": 1}


def test_a_record_unpublishable_in_every_form_is_dropped_and_counted_not_retried(broker):
    broker.refuse_topics["dlq"] = KafkaError(KafkaError.INVALID_RECORD)
    outbox = KafkaOutbox(BatchProducer(KafkaConnection("fake:9092")), TOPICS)
    report = run(outbox.publish([], [DeadLetter(message(b"x"), "undecodable", "bad_marker", "x")]))
    assert broker.on("dlq") == [] and report.dropped == 1


# --- transient and fatal errors -------------------------------------------------------------------


@pytest.mark.parametrize("code", [KafkaError._MSG_TIMED_OUT, KafkaError.NOT_ENOUGH_REPLICAS,
                                  KafkaError._TRANSPORT])
def test_a_transient_delivery_error_raises_publish_error_for_the_caller_to_retry(broker, code):
    broker.delivery_errors.append(KafkaError(code))
    outbox = KafkaOutbox(BatchProducer(KafkaConnection("fake:9092")), TOPICS)
    with pytest.raises(PublishError):
        run(outbox.publish([("m1", _decision(ACCEPTED))], []))
    assert broker.on("dlq") == []


def test_a_transient_error_raised_by_produce_raises_publish_error(broker):
    broker.produce_errors.append(KafkaError(KafkaError._UNKNOWN_TOPIC))
    with pytest.raises(PublishError):
        BatchProducer(KafkaConnection("fake:9092")).produce_all([OutRecord("ledger", b"k", b"v")])


@pytest.mark.parametrize("where", ["produce", "delivery"])
def test_a_fatal_error_recreates_the_producer_then_raises_so_the_retry_works(broker, where):
    fatal = KafkaError(KafkaError._FATAL, "fenced", fatal=True)
    (broker.produce_errors if where == "produce" else broker.delivery_errors).append(fatal)
    p = BatchProducer(KafkaConnection("fake:9092"), max_message_bytes=123_456)
    with pytest.raises(PublishError, match="fatal"):
        p.produce_all([OutRecord("ledger", b"k", b"v")])
    assert len(broker.producers) == 2 and broker.producers[0].purged
    assert broker.producers[1].config == broker.producers[0].config
    p.produce_all([OutRecord("ledger", b"k", b"v")])
    assert len(broker.on("ledger")) == 1


def test_a_fatal_error_reported_between_batches_recreates_the_producer_before_the_next(broker):
    p = BatchProducer(KafkaConnection("fake:9092"))
    broker.producers[0].config["error_cb"](KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    p.produce_all([OutRecord("ledger", b"k", b"v")])
    assert len(broker.producers) == 2 and len(broker.on("ledger")) == 1
    assert broker.producers[0].purged and broker.producers[0].queue == []
