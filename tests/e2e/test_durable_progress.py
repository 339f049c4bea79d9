"""Durable progress lives with the state: a committed offset that ran ahead of what the decider stored
(as Faust has done with in-flight events) cannot make the decider skip events."""
from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

from tests.support.pipeline import PARTITIONS, assert_exact_outputs, expected_states
from tests.support.random_history import random_history


def _commit_group_to_the_end(pipeline) -> int:
    """Commit the decider group's offsets at the end of every input partition (the group is empty)."""
    group = f"{pipeline.env['LEDGER_CONSUMER_GROUP']}-all"
    consumer = Consumer({"bootstrap.servers": pipeline.settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        ends = []
        for p in range(PARTITIONS):
            _, high = consumer.get_watermark_offsets(TopicPartition(pipeline.settings.events_topic, p), timeout=10)
            ends.append(TopicPartition(pipeline.settings.events_topic, p, high))
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
