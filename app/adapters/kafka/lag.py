"""Consumer lag of the workers' groups, read from the cluster (`ledger status`, the workers' lag gauges).

Per partition: the end offset (high watermark) minus the group's committed offset, in messages, and
in seconds the age of the oldest message not yet processed: now minus the timestamp of the message at
the committed offset. A partition the group never committed starts at the beginning (the workers'
``auto_offset_reset`` is ``earliest``), so its lag is everything still stored.

The group is only read, never joined: offsets and members come from the AdminClient, watermarks too,
and the message at a committed offset is fetched by a consumer that is ``assign``ed (no group
membership) and never commits. Every call has a timeout.
"""
from __future__ import annotations

import concurrent.futures
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from app.adapters.kafka.connection import KafkaConnection

TIMEOUT_S = 5.0


class LagError(RuntimeError):
    """The cluster did not answer in time, or a topic cannot be read."""


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    role: str  # the stage reading the topic: decider (input topic) or projector (ledger topic)
    partition: int
    low: int
    end: int
    committed: int | None  # None: the group never committed this partition
    messages: int
    seconds: float  # age of the oldest unprocessed message; 0 without lag
    oldest_timestamp: int | None = None  # ms, the timestamp of the message at the position


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    assignment: tuple[tuple[str, int], ...]  # (topic, partition)


@dataclass
class GroupLag:
    group: str
    state: str  # STABLE, EMPTY, PREPARING_REBALANCE, DEAD (unknown to the cluster), ...
    members: list[Member] = field(default_factory=list)
    partitions: list[PartitionLag] = field(default_factory=list)

    @property
    def committed_any(self) -> bool:
        return any(p.committed is not None for p in self.partitions)

    @property
    def exists(self) -> bool:
        return bool(self.members) or self.committed_any

    def total(self, role: str | None = None) -> int:
        return sum(p.messages for p in self.partitions if role is None or p.role == role)

    def oldest_seconds(self, role: str | None = None) -> float:
        return max((p.seconds for p in self.partitions if role is None or p.role == role), default=0.0)


def partition_lag(topic: str, role: str, partition: int, low: int, end: int, committed: int | None,
                  oldest_timestamp: int | None, now_ms: int) -> PartitionLag:
    """The lag of one partition: from the committed offset (or the beginning) to the end. A committed
    offset below the first stored one (retention deleted the messages) counts from the first stored."""
    position = low if committed is None else min(max(committed, low), end)
    messages = max(0, end - position)
    seconds = 0.0
    if messages and oldest_timestamp is not None:
        seconds = max(0.0, (now_ms - oldest_timestamp) / 1000.0)
    return PartitionLag(topic, role, partition, low, end, committed, messages, seconds,
                        oldest_timestamp if messages else None)


class ConsumerLag:
    """Reads groups' members, committed offsets and lag. Blocking: call from a thread or a CLI."""

    def __init__(self, connection: KafkaConnection, *, timeout_s: float = TIMEOUT_S):
        self.timeout_s = timeout_s
        # librdkafka's own log would print every failed connection to stderr: a failure reaches the
        # caller as a LagError instead (one line in `ledger status`, one log line a minute in a worker)
        quiet = {"log_level": 0}
        self._admin = AdminClient({**connection.librdkafka(), **quiet})
        self._consumer = Consumer({
            **quiet,
            **connection.librdkafka(),
            "group.id": f"ledger-lag-{uuid.uuid4().hex[:12]}",  # required; never joined, never committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "max.partition.fetch.bytes": 65_536,  # one message per partition is all we read
            "queued.max.messages.kbytes": 1024,
            "fetch.wait.max.ms": 50,
        })

    # --- reading the cluster -----------------------------------------------------------------

    def _result(self, future, what: str):
        try:
            return future.result(self.timeout_s)
        except KafkaException as exc:
            raise LagError(f"{what}: {exc.args[0].str() if exc.args else exc}") from None
        except concurrent.futures.TimeoutError:
            raise LagError(f"{what}: no answer within {self.timeout_s:g}s") from None
        except Exception as exc:  # a cancelled future, say
            raise LagError(f"{what}: {type(exc).__name__}: {exc}") from None

    def describe(self, groups: list[str]) -> dict[str, tuple[str, list[Member]]]:
        """(state, members) of each group; an unknown group is ("DEAD", [])."""
        if not groups:
            return {}
        futures = self._admin.describe_consumer_groups(groups, request_timeout=self.timeout_s)
        result = {}
        for group, future in futures.items():
            d = self._result(future, f"describing consumer group {group}")
            members = [Member(m.member_id, m.client_id, m.host,
                              tuple(sorted((tp.topic, tp.partition) for tp in
                                           (m.assignment.topic_partitions if m.assignment else []))))
                       for m in d.members]
            result[group] = (d.state.name if hasattr(d.state, "name") else str(d.state), members)
        return result

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        """The group's committed offsets (the next offset to read) by (topic, partition)."""
        futures = self._admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                          request_timeout=self.timeout_s)
        found = self._result(futures[group], f"reading the offsets of consumer group {group}")
        return {(tp.topic, tp.partition): tp.offset for tp in (found.topic_partitions or [])
                if tp.error is None and tp.offset >= 0}

    def watermarks(self, topics: list[str]) -> dict[tuple[str, int], tuple[int, int]]:
        """(low, high) of every partition of ``topics``."""
        try:
            metadata = self._admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise LagError(f"reading the cluster metadata: {exc.args[0].str() if exc.args else exc}") from None
        partitions = []
        for topic in topics:
            t = metadata.topics.get(topic)
            if t is None or t.error is not None:
                raise LagError(f"topic {topic} cannot be read: {t.error.str() if t is not None else 'no such topic'}")
            partitions += [TopicPartition(topic, p) for p in sorted(t.partitions)]
        if not partitions:
            return {}
        ends = {}
        for spec, name in ((OffsetSpec.earliest(), "low"), (OffsetSpec.latest(), "high")):
            futures = self._admin.list_offsets({tp: spec for tp in partitions}, request_timeout=self.timeout_s)
            for tp, future in futures.items():
                info = self._result(future, f"reading the {name} watermark of {tp.topic}[{tp.partition}]")
                ends.setdefault((tp.topic, tp.partition), []).append(info.offset)
        return {tp: (v[0], v[1]) for tp, v in ends.items()}

    def timestamps_at(self, positions: dict[tuple[str, int], int]) -> dict[tuple[str, int], int | None]:
        """The timestamp (ms) of the first message at or after each position; missing when none came
        within the timeout (a partition whose messages were all deleted meanwhile, say)."""
        found: dict[tuple[str, int], int | None] = {}
        if not positions:
            return found
        assignment = [TopicPartition(t, p, offset) for (t, p), offset in positions.items()]
        self._consumer.assign(assignment)
        self._consumer.resume(assignment)  # a pause of an earlier call outlives the unassign
        deadline = time.monotonic() + self.timeout_s
        try:
            while len(found) < len(positions) and time.monotonic() < deadline:
                for msg in self._consumer.consume(len(positions), timeout=0.2):
                    tp = (msg.topic(), msg.partition())
                    if msg.error() is not None or tp in found or tp not in positions:
                        continue
                    kind, ms = msg.timestamp()
                    found[tp] = ms if kind != TIMESTAMP_NOT_AVAILABLE and ms >= 0 else None
                    self._consumer.pause([TopicPartition(*tp)])
        finally:
            self._consumer.unassign()
        return found

    # --- lag ---------------------------------------------------------------------------------

    def group_lag(self, group: str, topics: dict[str, str], *, described: tuple[str, list[Member]] | None = None,
                  now_ms: int | None = None) -> GroupLag:
        """The lag of ``group`` on ``topics`` ({topic: role}); ``described``: its (state, members)
        when already read."""
        state, members = described if described is not None else self.describe([group])[group]
        committed = self.committed(group)
        marks = self.watermarks(list(topics))
        positions = {}
        for tp, (low, high) in marks.items():
            c = committed.get(tp)
            position = low if c is None else min(max(c, low), high)
            if position < high:
                positions[tp] = position
        stamps = self.timestamps_at(positions)
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        partitions = [partition_lag(t, topics[t], p, low, high, committed.get((t, p)), stamps.get((t, p)), now_ms)
                      for (t, p), (low, high) in sorted(marks.items())]
        return GroupLag(group, state, members, partitions)

    def close(self) -> None:
        self._consumer.close()
