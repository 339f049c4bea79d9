"""Faust events to the services' InputMessage: the Kafka timestamp, which the skew guard reads."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.entrypoints.worker.faust_app import to_input_message


def faust_event(timestamp, key=b"m1", headers=None):
    """What Faust hands an agent: the message's timestamp is in seconds (Kafka's ms / 1000.0)."""
    return SimpleNamespace(message=SimpleNamespace(topic="events", partition=3, offset=7, key=key, value=b"v",
                                                   headers=headers or [], timestamp=timestamp))


@pytest.mark.parametrize("ms", [1_717_200_000_123, 1_717_200_000_001, 1_767_225_599_999, 4_102_444_800_007, 1])
def test_the_kafka_timestamp_comes_through_in_exact_milliseconds(ms):
    m = to_input_message(faust_event(ms / 1000.0))
    assert m.timestamp == ms
    assert (m.topic, m.partition, m.offset, m.key, m.value) == ("events", 3, 7, b"m1", b"v")


@pytest.mark.parametrize("seconds", [None, -0.001], ids=["none", "kafka-NO_TIMESTAMP"])
def test_a_message_without_a_timestamp_has_none(seconds):
    """Kafka marks a record without a timestamp with -1 ms: reading it as a time in 1969 would make
    every event look skewed far into the future."""
    assert to_input_message(faust_event(seconds)).timestamp is None


@pytest.mark.parametrize("ms", [-2, -5, -1000, -86_400_000])
def test_a_negative_timestamp_other_than_no_timestamp_is_kept(ms):
    """Found by tests/e2e/test_fuzz.py: librdkafka produces any negative timestamp and the broker
    stores it. Read as "no timestamp", it turned the skew guard off, and an event years ahead was
    decided and pushed its member's clock forward for good. Only -1 means no timestamp; any other is
    a time before 1970, and the guard dead-letters what is more than the skew limit after it."""
    assert to_input_message(faust_event(ms / 1000.0)).timestamp == ms
