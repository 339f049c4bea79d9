"""The offset probe against the real Kafka: which record a consumer at an offset is given first."""
from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer, TopicPartition

from app.adapters.kafka.offset_probe import OffsetProbe
from app.bootstrap import kafka_connection

pytestmark = pytest.mark.stack


def test_the_probe_names_the_first_record_at_or_after_an_offset_and_none_past_the_end(settings, temp_topic,
                                                                                       kafka_admin):
    topic = temp_topic(1)
    connection = kafka_connection(settings)
    producer = Producer({**connection.librdkafka(), "enable.idempotence": True})
    for i in range(6):
        producer.produce(topic, key=b"k", value=b"v%d" % i, partition=0)
    assert producer.flush(30) == 0
    probe = OffsetProbe(connection)
    try:
        assert [probe.first_offset_from(topic, 0, o) for o in (0, 3, 5)] == [0, 3, 5]
        assert probe.first_offset_from(topic, 0, 6) is None
        # records removed below offset 4 (as retention would): a consumer at 1 is given 4 first
        for done in kafka_admin.delete_records([TopicPartition(topic, 0, 4)]).values():
            done.result(30)
        assert probe.first_offset_from(topic, 0, 1) == 4
    finally:
        probe.close()


def test_transaction_markers_are_offsets_no_consumer_is_given(settings, temp_topic):
    topic = temp_topic(1)
    connection = kafka_connection(settings)
    producer = Producer({**connection.librdkafka(), "transactional.id": f"probe-test-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(30)

    def transaction(n: int) -> None:
        producer.begin_transaction()
        for i in range(n):
            producer.produce(topic, key=b"k", value=b"t%d" % i, partition=0)
        producer.commit_transaction(30)

    probe = OffsetProbe(connection)
    try:
        transaction(2)  # records at 0 and 1, the commit marker at 2
        assert probe.first_offset_from(topic, 0, 1) == 1
        assert probe.first_offset_from(topic, 0, 2) is None  # only the marker is left: read to the end
        transaction(1)  # the record at 3, its marker at 4
        assert probe.first_offset_from(topic, 0, 2) == 3
    finally:
        probe.close()
