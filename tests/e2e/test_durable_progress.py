"""Durable progress lives with the state: a committed offset that ran ahead of what the decider stored
or the projector applied (as Faust does with in-flight events when it stops) cannot make either skip
messages."""
from __future__ import annotations

import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition

from app.bootstrap import kafka_connection
from tests.support.helpers import wait_until
from tests.support.pipeline import PARTITIONS, assert_exact_outputs, expected_states
from tests.support.random_history import random_history


def _commit_group_to_the_end(pipeline, role: str = "all", topic: str | None = None) -> int:
    """Commit a role's group offsets at the end of every partition of its topic (the group is empty)."""
    group = f"{pipeline.env['LEDGER_CONSUMER_GROUP']}-{role}"
    topic = topic or pipeline.settings.events_topic
    consumer = Consumer({**kafka_connection(pipeline.settings).librdkafka(), "group.id": group,
                         "enable.auto.commit": False})
    try:
        ends = []
        for p in range(PARTITIONS):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends.append(TopicPartition(topic, p, high))
        consumer.commit(offsets=ends, asynchronous=False)
        return sum(tp.offset for tp in ends)
    finally:
        consumer.close()


def test_committed_offsets_ahead_of_the_store_are_sought_back(pipeline):
    events = random_history(uuid.uuid4().hex[:6], members=30, events=1200, seed=5)
    half = len(events) // 2
    worker = pipeline.start_worker()
    pipeline.publish(events[:half])
    pipeline.wait_for_views(expected_states(events[:half])[0])
    worker.stop()

    pipeline.publish(events[half:])
    assert _commit_group_to_the_end(pipeline) == len(events)  # as if the second half had been processed

    pipeline.start_worker()
    assert_exact_outputs(pipeline, events)


def test_projector_offsets_committed_ahead_of_the_views_are_sought_back(pipeline):
    events = random_history(uuid.uuid4().hex[:6], members=20, events=400, seed=7)
    expected, _ = expected_states(events)
    decider = pipeline.start_worker("decider")
    pipeline.publish(events)
    entries = sum(s.seq for s in expected.values())
    wait_until(lambda: _ledger_size(pipeline) >= entries, 120, message="the decider's ledger entries")
    decider.stop()

    # As if a projector had acknowledged every entry without applying one.
    assert _commit_group_to_the_end(pipeline, "projector", pipeline.settings.ledger_topic) == entries
    pipeline.start_worker("projector")
    pipeline.wait_for_views(expected)


def _ledger_size(pipeline) -> int:
    consumer = Consumer({**kafka_connection(pipeline.settings).librdkafka(), "group.id": "size-probe"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(pipeline.settings.ledger_topic, p), timeout=10)[1]
                   for p in range(PARTITIONS))
    except KafkaException:  # a new topic's leaders are still being elected: not there yet, ask again
        return 0
    finally:
        consumer.close()
