"""`ledger simulate` against the real Kafka: every item lands on a fresh topic, keyed by member_id,
exactly as generated; the rate limit holds; JSON lines go through `ledger publish`."""
from __future__ import annotations

import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer, TopicPartition

from app.adapters.avro.errors import DecodeError
from app.adapters.avro.mapping import decode_event
from app.adapters.kafka.connection import KafkaConnection
from app.adapters.kafka.publisher import EventPublisher
from app.bootstrap import kafka_connection
from app.domain.validation import MalformedEvent, validate
from tests.support.helpers import ledger
from tools.simulate.publish import SimulateError, check_topic, publish, to_record
from tools.simulate.workload import EVENT_KINDS, ItemKind, WorkloadConfig, generate

pytestmark = pytest.mark.stack

CONFIG = WorkloadConfig(seed=21, members=200, events=2_000, share_malformed=0.02, share_undecodable=0.02,
                        id_prefix="simtest.")


def read_all(connection, topic: str, partitions: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of every message of the topic, read up to the high watermarks."""
    consumer = Consumer({**connection.librdkafka(), "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        done = {p: 0 for p in range(partitions)}
        out = []
        while any(done[p] < ends[p] for p in done):
            msg = consumer.poll(5)
            assert msg is not None, f"timed out reading {topic}: {done} of {ends}"
            assert msg.error() is None, msg.error()
            out.append((msg.key(), msg.value()))
            done[msg.partition()] = msg.offset() + 1
        return out
    finally:
        consumer.close()


def test_publishes_every_item_keyed_by_member(settings, temp_topic):
    topic = temp_topic(3)
    items = list(generate(CONFIG))
    progress = []
    stats = publish(items, kafka_connection(settings), topic, on_progress=progress.append)

    assert stats.items == len(items) == 2_000
    assert stats.counts == {k.value: n for k, n in Counter(i.kind for i in items).items()} | {
        k.value: 0 for k in ItemKind if k not in {i.kind for i in items}}
    assert progress[-1] == 2_000 and stats.rate > 0

    messages = read_all(kafka_connection(settings), topic, 3)
    assert len(messages) == 2_000
    publisher = EventPublisher(kafka_connection(settings), topic)
    try:
        records = [to_record(publisher, i) for i in items]
    finally:
        publisher.close()
    assert Counter(messages) == Counter((r.key, r.value) for r in records)  # exactly the generated items, once

    by_message = {}
    for item, record in zip(items, records):
        by_message.setdefault((record.key, record.value), item)
    kinds = Counter()
    for key, value in messages:
        item = by_message[key, value]
        assert key == item.member_id.encode()
        kinds[item.kind] += 1
        if item.kind in EVENT_KINDS:
            event = decode_event(value)
            assert event == item.event and key == event.member_id.encode()
            validate(event)
        elif item.kind is ItemKind.MALFORMED:
            with pytest.raises(MalformedEvent):
                validate(decode_event(value))
        else:
            with pytest.raises(DecodeError):
                decode_event(value)
    assert kinds[ItemKind.MALFORMED] > 0 and kinds[ItemKind.UNDECODABLE] > 0


def test_rate_limit_holds(settings, temp_topic):
    topic = temp_topic(1)
    items = list(generate(WorkloadConfig(seed=2, members=50, events=600)))
    stats = publish(items, kafka_connection(settings), topic, rate=1_000)
    assert stats.items == 600
    assert stats.elapsed_s >= 0.55  # 600 items at 1,000/s, the bucket starting empty
    assert stats.rate <= 1_100
    assert len(read_all(kafka_connection(settings), topic, 1)) == 600


def test_missing_topic_and_unreachable_kafka_fail_fast(settings):
    missing = f"test.missing.{uuid.uuid4().hex[:8]}"
    with pytest.raises(SimulateError, match="does not exist"):
        check_topic(kafka_connection(settings), missing)
    with pytest.raises(SimulateError, match="does not exist"):
        check_topic(kafka_connection(settings), missing)  # and asking did not auto-create it
    with pytest.raises(SimulateError, match="did not answer"):
        check_topic(KafkaConnection("127.0.0.1:1"), "downloads.events", timeout=1)


def test_cli_publishes_and_reports(settings, temp_topic):
    topic = temp_topic(3)
    run = ledger("simulate", "--members", "40", "--events", "300", "--seed", "4", "--id-prefix", "simcli.",
                 "--topic", topic, "--rate", "2000")
    assert run.returncode == 0, run.stderr
    assert f"published 300 items to {topic}" in run.stdout and "events/s (target 2000/s)" in run.stdout
    assert len(read_all(kafka_connection(settings), topic, 3)) == 300

    run = ledger("simulate", "--events", "10", "--topic", f"test.missing.{uuid.uuid4().hex[:8]}")
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "does not exist" in run.stderr


def test_json_lines_go_through_ledger_publish(settings, temp_topic, tmp_path):
    path = tmp_path / "workload.jsonl"
    run = ledger("simulate", "--members", "100", "--events", "1000", "--seed", "9", "--id-prefix", "simjson.",
                 "--share-malformed", "0.02", "--share-undecodable", "0.02", "--jsonl", str(path))
    assert run.returncode == 0, run.stderr
    items = list(generate(WorkloadConfig(seed=9, members=100, events=1_000, share_malformed=0.02,
                                         share_undecodable=0.02, id_prefix="simjson.")))
    good = sum(1 for i in items if i.kind in EVENT_KINDS)
    malformed = sum(1 for i in items if i.kind is ItemKind.MALFORMED)
    assert len(path.read_text().splitlines()) == good + malformed

    topic = temp_topic(3)
    run = ledger("publish", str(path), "--topic", topic)
    assert run.returncode == 1  # the malformed lines are refused
    assert f"published {good} event(s) to {topic}; refused {malformed}" in run.stdout
    assert len(read_all(kafka_connection(settings), topic, 3)) == good
