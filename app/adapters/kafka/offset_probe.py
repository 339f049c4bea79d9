"""Asks the cluster which record a consumer positioned at an offset would be given first.

The worker's positions (`app.entrypoints.worker.positions`) use it to tell a gap that holds nothing a
consumer is given (transaction markers, records removed by retention) from messages its consumer
skipped. The consumer is ``assign``ed (no group, never commits), reads uncommitted records as the
workers' consumers do, and every call has a timeout. Blocking: call it from a thread.
"""
from __future__ import annotations

import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition

from app.adapters.kafka.connection import KafkaConnection

TIMEOUT_S = 5.0


class ProbeError(RuntimeError):
    """The cluster did not say in time which record comes first."""


class OffsetProbe:
    def __init__(self, connection: KafkaConnection, *, timeout_s: float = TIMEOUT_S):
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._consumer = Consumer({
            "log_level": 0,  # a failure reaches the caller as a ProbeError, not as librdkafka's stderr
            **connection.librdkafka(),
            # required; never joined, never committed. Under the prefix the workers' principals are
            # granted for the lag reader's consumer of the same kind (deploy/security/kafka-acls.txt).
            "group.id": f"ledger-lag-probe-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_uncommitted",  # as aiokafka's default, the workers' consumers
            "max.partition.fetch.bytes": 65_536,
            "fetch.wait.max.ms": 50,
        })

    def first_offset_from(self, topic: str, partition: int, offset: int) -> int | None:
        """The offset of the first record at or after ``offset`` that a consumer is given, or None
        when the partition holds none there (``offset`` is at or past its end)."""
        with self._lock:  # one assignment at a time on the one consumer
            return self._first_offset_from(topic, partition, offset)

    def _first_offset_from(self, topic: str, partition: int, offset: int) -> int | None:
        tp = TopicPartition(topic, partition)
        try:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=self.timeout_s)
        except KafkaException as exc:
            raise ProbeError(f"{topic}[{partition}] watermarks: {exc.args[0].str() if exc.args else exc}") from None
        if offset >= high:
            return None
        self._consumer.assign([TopicPartition(topic, partition, max(offset, low))])
        deadline = time.monotonic() + self.timeout_s
        try:
            while time.monotonic() < deadline:
                for msg in self._consumer.consume(1, timeout=0.2):
                    if msg.error() is None:
                        return msg.offset()
                [position] = self._consumer.position([tp])
                if position.offset >= high:
                    return None  # read up to the end: only records no consumer is given (transaction markers)
        finally:
            self._consumer.unassign()
        raise ProbeError(f"{topic}[{partition}]: no record from offset {offset} within {self.timeout_s:g}s "
                         f"(end {high})")

    def close(self) -> None:
        self._consumer.close()
