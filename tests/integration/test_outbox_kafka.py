"""The decider's outbox against the real Kafka: records over a limit never wedge a batch.

Two limits matter: the producer's message.max.bytes (librdkafka refuses the record in produce()) and
the topic's max.message.bytes (the broker refuses the whole batch the record travels in).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from app.adapters.kafka.outbox import KafkaOutbox, OutputTopics
from app.adapters.kafka.producer import BatchProducer
from app.bootstrap import kafka_connection
from app.service.ports import DeadLetter, InputMessage
from tests.support.helpers import wait_until

pytestmark = pytest.mark.stack


def read_all(settings, topic: str, expected: int, partitions: int = 1) -> list:
    consumer = Consumer({**kafka_connection(settings).librdkafka(), "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    got = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])

        def enough():
            got.extend(m for m in consumer.consume(100, timeout=0.5) if not m.error())
            return len(got) >= expected
        wait_until(enough, 60, message=f"{expected} message(s) on {topic}")
        return got
    finally:
        consumer.close()


def test_a_dead_letter_of_a_999950_byte_value_is_produced_truncated_and_reads_back(settings, temp_topic):
    topics = OutputTopics(temp_topic(1), temp_topic(1), temp_topic(1))
    producer = BatchProducer(kafka_connection(settings))
    original = os.urandom(999_950)  # the user's report: accepted by the broker, its dead letter was not
    m = InputMessage("downloads.events", 4, 123, b"m-big", original, (("trace-id", b"t-1"),))
    try:
        started = time.perf_counter()
        report = asyncio.run(KafkaOutbox(producer, topics).publish(
            [], [DeadLetter(m, "undecodable", "bad_marker", "starts with 62c2, expected c301")]))
        print(f"published the truncated dead letter in {time.perf_counter() - started:.2f}s")
    finally:
        producer.close()
    [msg] = read_all(settings, topics.dlq, 1)
    h = dict(msg.headers())
    value = msg.value()
    print(f"dead letter value {len(value):,} of {len(original):,} bytes")
    assert report.truncated == 1
    assert msg.key() == b"m-big" and original.startswith(value) and 990_000 < len(value) < 999_950
    assert h["dlq.truncated"] == b"true" and h["dlq.original_size"] == b"999950"
    assert h["dlq.original_sha256"].decode() == hashlib.sha256(original).hexdigest()
    assert h["error.code"] == b"bad_marker" and h["source.offset"] == b"123" and h["trace-id"] == b"t-1"


def test_a_batch_the_broker_refuses_for_size_publishes_its_innocent_records_and_a_headers_only_dead_letter(
        settings, temp_topic):
    """Kafka refuses a whole batch over the topic's max.message.bytes with MSG_SIZE_TOO_LARGE, the
    small records it travelled with included."""
    topics = OutputTopics(temp_topic(1), temp_topic(1), temp_topic(1, {"max.message.bytes": "200000"}))
    producer = BatchProducer(kafka_connection(settings))
    big = os.urandom(500_000)  # under the producer's limit, over the topic's; random: lz4 cannot shrink it
    letters = [DeadLetter(InputMessage("events", 0, i, b"m-1", v, ()), "undecodable", "bad_marker", "x")
               for i, v in enumerate([b"small-0", big, b"small-2"])]
    try:
        report = asyncio.run(KafkaOutbox(producer, topics).publish([], letters))
    finally:
        producer.close()
    got = read_all(settings, topics.dlq, 3)
    assert sorted(m.value() for m in got if m.value()) == [b"small-0", b"small-2"]
    [refused] = [m for m in got if m.value() is None]
    h = dict(refused.headers())
    assert h["error.code"] == b"unpublishable" and h["dlq.original_code"] == b"bad_marker"
    assert h["source.offset"] == b"1" and h["dlq.original_size"] == b"500000"
    assert h["dlq.original_sha256"].decode() == hashlib.sha256(big).hexdigest()
    assert report.diverted == {"unpublishable": 1}
