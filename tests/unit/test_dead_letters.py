"""`ledger dlq`: reading dead letters' headers and values, and what a redrive publishes (no Kafka)."""
from __future__ import annotations

from app.adapters.avro.mapping import encode_event
from app.adapters.kafka.dead_letters import (
    ALREADY_REDRIVEN,
    TRUNCATED,
    DeadLetterRecord,
    Selection,
    decode_value,
    event_id,
    header_text,
    hex_dump,
    redrive_record,
    refusal,
)
from app.adapters.kafka.outbox import KafkaOutbox
from app.service.ports import InputMessage
from tests.support.domain_builders import acquire, event

EVENTS = "downloads.events"


def dead_letter(value: bytes | None = b"\xc3\x01value", *, headers=(), timestamp: int | None = 5_000,
                code: str = "clock_skew", source_partition: int = 3, source_timestamp: int | None = 1_000,
                partition: int = 2, offset: int = 17) -> DeadLetterRecord:
    own = [("error.kind", b"malformed"), ("error.code", code.encode()), ("error.detail", b"too far ahead"),
           ("source.topic", EVENTS.encode()), ("source.partition", str(source_partition).encode()),
           ("source.offset", b"41")]
    if source_timestamp is not None:
        own.append(("source.timestamp", str(source_timestamp).encode()))
    return DeadLetterRecord("downloads.dlq", partition, offset, timestamp, b"m-1", value, tuple(own) + tuple(headers))


def test_the_headers_read_as_the_outbox_writes_them():
    dl = dead_letter(headers=[("trace-id", b"t-1")])
    assert (dl.kind, dl.code, dl.detail, dl.position) == ("malformed", "clock_skew", "too far ahead", "2:17")
    assert (dl.source_topic, dl.source_partition, dl.source_offset, dl.source_timestamp) == (EVENTS, 3, 41, 1_000)
    assert dl.source == f"{EVENTS}[3]@41"
    assert dl.redrive_count == 0 and not dl.truncated
    assert dl.passed_on() == (("trace-id", b"t-1"),)


def test_the_outbox_records_the_source_timestamp_when_the_message_has_one():
    with_ts = InputMessage(EVENTS, 1, 2, b"k", b"v", (), 1234)
    headers = dict(KafkaOutbox._error_headers("malformed", "clock_skew", "d", with_ts))
    assert headers["source.timestamp"] == b"1234"
    without = InputMessage(EVENTS, 1, 2, b"k", b"v")
    assert "source.timestamp" not in dict(KafkaOutbox._error_headers("malformed", "clock_skew", "d", without))


def test_a_redrive_republishes_the_original_bytes_in_the_source_partition_at_the_source_time():
    dl = dead_letter(headers=[("trace-id", b"t-1")])
    r = redrive_record(dl, EVENTS, now_ms=9_000, partitions=12)
    assert (r.topic, r.key, r.value, r.partition, r.timestamp) == (EVENTS, b"m-1", dl.value, 3, 1_000)
    assert r.headers == (("trace-id", b"t-1"), ("redrive.count", b"1"), ("redrive.from", b"2:17"),
                         ("redrive.at", b"9000"))


def test_without_a_source_timestamp_the_dead_letters_own_is_used_and_new_timestamp_means_now():
    dl = dead_letter(source_timestamp=None)
    assert redrive_record(dl, EVENTS, 9_000).timestamp == 5_000
    assert redrive_record(dead_letter(), EVENTS, 9_000, keep_timestamp=False).timestamp is None


def test_another_topic_or_a_partition_that_no_longer_exists_is_left_to_the_partitioner():
    assert redrive_record(dead_letter(), "other.events", 0).partition is None
    assert redrive_record(dead_letter(source_partition=20), EVENTS, 0, partitions=12).partition is None


def test_a_redriven_copy_that_failed_again_counts_on_and_is_refused_without_force():
    again = dead_letter(headers=[("redrive.count", b"1"), ("redrive.from", b"0:5"), ("redrive.at", b"1")])
    assert again.redrive_count == 1 and again.redrive_from == "0:5"
    reason, why = refusal(again)
    assert reason == ALREADY_REDRIVEN and "--force" in why and "0:5" in why
    assert refusal(again, force=True) is None
    r = redrive_record(again, EVENTS, 7)
    assert dict(r.headers)["redrive.count"] == b"2" and dict(r.headers)["redrive.from"] == b"2:17"
    assert [k for k, _ in r.headers].count("redrive.count") == 1


def test_truncated_and_headers_only_dead_letters_are_never_redriven():
    cut = dead_letter(headers=[("dlq.truncated", b"true"), ("dlq.original_size", b"2000000"),
                               ("dlq.original_sha256", b"ab12")])
    reason, why = refusal(cut, force=True)
    assert reason == TRUNCATED and "2000000" in why and "ab12" in why
    assert refusal(dead_letter(value=None), force=True)[0] == TRUNCATED
    assert refusal(dead_letter()) is None


def test_the_selection_filters_by_code_and_dead_letter_time():
    dl = dead_letter(timestamp=5_000)
    assert Selection().matches(dl)
    assert Selection(frozenset({"clock_skew", "x"})).matches(dl)
    assert not Selection(frozenset({"key_mismatch"})).matches(dl)
    assert Selection(since=5_000).matches(dl) and not Selection(since=5_001).matches(dl)
    assert Selection(until=5_001).matches(dl) and not Selection(until=5_000).matches(dl)
    assert not Selection(since=0).matches(dead_letter(timestamp=None))


def test_the_event_id_is_recovered_from_a_decodable_value_even_a_malformed_one():
    good = encode_event(event(acquire(), event_id="e-42", member="m-1"))
    assert event_id(good) == "e-42"
    malformed = encode_event(event(acquire("bad id"), event_id="e-43", member="m-1"))
    assert event_id(malformed) == "e-43"
    assert event_id(b"not avro") is None and event_id(None) is None and event_id(good[:14]) is None
    label, datum = decode_value(good)
    assert label.startswith("DownloadEvent v") and datum["member_id"] == "m-1"
    assert decode_value(b"\xc3\x01" + b"\x00" * 8).startswith("unknown_fingerprint")


def test_the_hex_dump_is_xxd_like_and_bounded():
    lines = hex_dump(bytes(range(40)) + b"ABC", limit=32)
    assert lines[0] == "00000000: 0001 0203 0405 0607 0809 0a0b 0c0d 0e0f  ................"
    assert lines[1].startswith("00000010: 1011")
    assert lines[-1] == "... 11 more byte(s)"
    assert hex_dump(b"hi") == ["00000000: 6869                                     hi"]
    assert header_text(b"clock_skew") == "clock_skew" and header_text(b"\xff\x00") == "0xff00"
