"""Reading a bounded range of the ledger topic, for the replay: a confluent-kafka consumer assigned
to every partition.

No consumer-group membership and no commits: the consumer is `assign`ed explicitly, reads each
partition from a start offset up to (not including) an end offset captured by the caller, and
stops there even while the live decider keeps appending. The range is the caller's business:
`beginning_offsets()` (a full replay), `offsets_for_time(ms)` (entries whose Kafka timestamp is at
or after ``ms``), `end_offsets()` (captured once, so a replay reads a fixed snapshot of the ledger).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, TopicPartition

from app.adapters.kafka.connection import KafkaConnection
from app.service.ports import InputMessage, LedgerReadError

METADATA_TIMEOUT_S = 30
STALL_TIMEOUT_S = 120  # no message and no position change for this long: the read fails


def consumer_config(connection: KafkaConnection, **overrides) -> dict:
    return {
        **connection.librdkafka(),
        # Required by librdkafka's consumer, never joined nor committed to (we assign, we do not subscribe).
        "group.id": f"ledger-replay-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",  # a start offset that no longer exists is an error, never a silent skip
        "fetch.wait.max.ms": 100,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        "queued.min.messages": 200_000,
        **overrides,
    }


class LedgerReader:
    def __init__(self, connection: KafkaConnection, topic: str, *, batch_size: int = 10_000, poll_timeout_s: float = 0.5,
                 **config_overrides):
        self.topic = topic
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        try:
            self._consumer = Consumer(consumer_config(connection, **config_overrides))
        except KafkaException as exc:
            raise LedgerReadError(f"cannot create a Kafka consumer for {connection.describe()}: {exc}") from None

    # --- offsets ------------------------------------------------------------------------

    def partitions(self) -> list[int]:
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise LedgerReadError(f"cannot read the metadata of {self.topic}: {exc.args[0]}") from None
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            reason = topic.error.str() if topic is not None and topic.error is not None else "no such topic"
            raise LedgerReadError(f"topic {self.topic} cannot be read: {reason}")
        return sorted(topic.partitions)

    def watermarks(self) -> dict[int, tuple[int, int]]:
        """(low, high) per partition: the first offset still stored and the next offset to be written."""
        result = {}
        for p in self.partitions():
            try:
                result[p] = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=METADATA_TIMEOUT_S, cached=False)
            except KafkaException as exc:
                raise LedgerReadError(f"cannot read the offsets of {self.topic}[{p}]: {exc.args[0]}") from None
        return result

    def end_offsets(self) -> dict[int, int]:
        return {p: high for p, (_, high) in self.watermarks().items()}

    def beginning_offsets(self) -> dict[int, int]:
        return {p: low for p, (low, _) in self.watermarks().items()}

    def offsets_for_time(self, timestamp_ms: int) -> dict[int, int]:
        """Per partition, the first offset whose message timestamp is >= timestamp_ms (the high
        watermark when there is none)."""
        marks = self.watermarks()
        query = [TopicPartition(self.topic, p, timestamp_ms) for p in marks]
        try:
            found = self._consumer.offsets_for_times(query, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise LedgerReadError(f"offsets_for_times on {self.topic} failed: {exc.args[0]}") from None
        result = {}
        for tp in found:
            if tp.error is not None:
                raise LedgerReadError(f"offsets_for_times on {self.topic}[{tp.partition}]: {tp.error.str()}")
            low, high = marks[tp.partition]
            result[tp.partition] = high if tp.offset < 0 else max(tp.offset, low)
        return result

    # --- reading ------------------------------------------------------------------------

    def read(self, start: dict[int, int], end: dict[int, int]) -> Iterator[list[InputMessage]]:
        """Batches of messages with start[p] <= offset < end[p], in offset order per partition.

        Ends when every partition has reached its end offset. Raises LedgerReadError on a fetch
        error or when nothing moves for STALL_TIMEOUT_S."""
        pending = {p: end[p] for p in end if start.get(p, end[p]) < end[p]}
        if not pending:
            return
        assignment = [TopicPartition(self.topic, p, start[p]) for p in pending]
        self._consumer.assign(assignment)
        self._consumer.resume(assignment)  # a pause of an earlier read outlives the unassign
        last_move = time.monotonic()
        try:
            while pending:
                messages = self._consumer.consume(self.batch_size, timeout=self.poll_timeout_s)
                batch: list[InputMessage] = []
                for msg in messages:
                    p = msg.partition()
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            if p in pending and msg.offset() >= pending[p]:
                                self._finish(p, pending)
                            continue
                        raise LedgerReadError(f"reading {self.topic}[{p}]: {err.str()}")
                    if p not in pending or msg.offset() >= pending[p]:
                        continue
                    batch.append(InputMessage(self.topic, p, msg.offset(), msg.key(), msg.value(),
                                              tuple(msg.headers() or ()), message_timestamp(msg)))
                    if msg.offset() + 1 >= pending[p]:
                        self._finish(p, pending)
                if batch:
                    last_move = time.monotonic()
                    yield batch
                elif pending:
                    # Offsets can be skipped (compaction, transaction markers): trust the positions.
                    positions = self._consumer.position([TopicPartition(self.topic, p) for p in pending])
                    for tp in positions:
                        if tp.offset >= 0 and tp.offset >= pending.get(tp.partition, 0):
                            self._finish(tp.partition, pending)
                            last_move = time.monotonic()
                    if time.monotonic() - last_move > STALL_TIMEOUT_S:
                        raise LedgerReadError(
                            f"no progress reading {self.topic} for {STALL_TIMEOUT_S}s; partitions left: "
                            + ", ".join(f"{p} (end {e})" for p, e in sorted(pending.items())))
        finally:
            self._consumer.unassign()

    def _finish(self, partition: int, pending: dict[int, int]) -> None:
        pending.pop(partition, None)
        self._consumer.pause([TopicPartition(self.topic, partition)])  # fetch no further than the end

    def close(self) -> None:
        self._consumer.close()


def message_timestamp(msg) -> int | None:
    """A consumed message's timestamp in ms; None for Kafka's "no timestamp" (type 0 or -1 ms)."""
    kind, ms = msg.timestamp()
    return ms if kind != TIMESTAMP_NOT_AVAILABLE and ms >= 0 else None
