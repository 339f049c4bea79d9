"""Contiguous consumption: per partition, a service is handed the messages that follow the last
one it was handed, and never a message past one it was not.

Faust (faust-streaming 0.15) can skip messages of a partition that a worker keeps across a
rebalance: a message prefetched before the rebalance reaches the stream after it, Faust records its
offset as read and then drops the messages before it when they are fetched again (faust-streaming
issues #216 and #221). In the cluster test, a projector kept ledger partitions across its group's
first rebalance, then saved its progress on one of them as 98 (and committed 98) while the entries
at 67 and 68 were never applied, and stopped consuming two others while they held entries it had
not applied. Committed offsets and durable progress then stand past messages never processed.

`PartitionPositions` keeps, for each assigned partition of one topic, the offset the service must
be handed next:

- on assignment, the position the worker sought to (the durable progress, or the committed offset
  when that is lower: `faust_app`);
- in each batch (`admit`), a partition's messages are taken in offset order; one below the next
  offset was handed over already and is dropped; one past it opens a gap. The cluster is asked
  which record a consumer at the next offset is given first: when it is the message in hand, the
  offsets between hold nothing a consumer is given (transaction markers, records removed by
  retention) and the gap is accepted. Otherwise the partition is sought back to the next offset and
  its messages from the gap on are dropped from this batch: they come again. For
  ``reseek_after_s`` after a seek, a gap is taken for the seek's echo (messages queued before it)
  and dropped without asking again;
- between batches (`check_idle`), a partition that was handed nothing for ``idle_after_s`` although
  its consumer delivered a message past its next offset (Faust's read offset), at two checks in a
  row, is sought back to the next offset: the form of the same fault in which every message left
  in the partition was dropped.
  A partition whose consumer delivered nothing past it is left alone, however far its high watermark
  is: Faust fetches every topic in one loop, which waits on a stream's full buffer, so under a
  backlog of input a partition can go for seconds without a record handed over (for minutes before
  each fetch was bounded to LEDGER_BATCH_SIZE records) and nothing is wrong.

Messages of a partition this worker is not assigned (prefetched before a rebalance took it away)
are dropped: another worker handles them from its own position.

A dropped message is still acknowledged to Faust with its batch, so a committed offset can stand
past it; the next assignment seeks back to the durable progress in that case, and the durable
progress only ever covers messages a service was handed and processed.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from app.service.ports import InputMessage

log = logging.getLogger(__name__)

Probe = Callable[[str, int, int], Awaitable[int | None]]  # (topic, partition, offset) -> first offset given
Seek = Callable[[str, int, int], Awaitable[None]]  # (topic, partition, offset)
SeekNoted = Callable[[str, str], None]  # (topic, reason: "skipped" or "idle")


class ProbeFailed(Exception):
    """The probe could not say which record comes first (the cluster did not answer in time)."""


class PartitionPositions:
    def __init__(self, topic: str, probe: Probe, seek: Seek, *, reseek_after_s: float = 5.0,
                 idle_after_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 on_seek_back: SeekNoted | None = None):
        self.topic = topic
        self._probe = probe
        self._seek = seek
        self._on_seek_back = on_seek_back
        self.reseek_after_s = reseek_after_s
        self.idle_after_s = idle_after_s
        self._clock = clock
        self._next: dict[int, int] = {}  # partition -> the offset to hand over next
        self._sought: dict[int, float] = {}  # partition -> when it was last sought back
        self._handed: dict[int, float] = {}  # partition -> when a message was last handed over (or checked)
        self._suspect: dict[int, int] = {}  # partition -> its next offset when an idle check first found it behind
        self.skips = 0  # gaps found to be skipped messages, each sought back
        self.stalls = 0  # idle partitions whose consumer delivered past their next offset, each sought back
        self.gaps_accepted = 0  # gaps that held nothing a consumer is given
        self.dropped = 0  # messages not handed over (already handed, past a gap, or not assigned)

    def next_offset(self, partition: int) -> int | None:
        return self._next.get(partition)

    def assigned(self, positions: Mapping[int, int]) -> None:
        """The partitions of this topic just assigned, each with the offset its consumer was sought to."""
        now = self._clock()
        for partition, offset in positions.items():
            self._next[partition] = offset
            self._handed[partition] = now
            self._sought.pop(partition, None)

    def revoked(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._next.pop(partition, None)
            self._sought.pop(partition, None)
            self._handed.pop(partition, None)
            self._suspect.pop(partition, None)

    async def admit(self, messages: list[InputMessage]) -> list[InputMessage]:
        """The messages of this topic to hand over, each partition's in offset order and contiguous
        with what was handed before; messages of other topics pass untouched."""
        by_partition: dict[int, list[InputMessage]] = {}
        other = []
        for m in messages:
            if m.topic == self.topic:
                by_partition.setdefault(m.partition, []).append(m)
            else:
                other.append(m)
        kept = other
        for partition, ms in by_partition.items():
            kept.extend(await self._admit_partition(partition, sorted(ms, key=lambda m: m.offset)))
        return kept

    async def _admit_partition(self, partition: int, messages: list[InputMessage]) -> list[InputMessage]:
        expected = self._next.get(partition)
        if expected is None:
            self.dropped += len(messages)
            log.info("%s[%d]: %d message(s) of a partition not assigned here dropped", self.topic, partition,
                     len(messages))
            return []
        kept = []
        for i, m in enumerate(messages):
            if m.offset < expected:
                self.dropped += 1
                continue
            if m.offset > expected and not await self._gap_holds_nothing(partition, expected, m.offset):
                self.dropped += len(messages) - i
                break
            kept.append(m)
            expected = m.offset + 1
        if kept:
            self._next[partition] = expected
            self._handed[partition] = self._clock()
            self._sought.pop(partition, None)
            self._suspect.pop(partition, None)
        return kept

    async def _gap_holds_nothing(self, partition: int, expected: int, offset: int) -> bool:
        sought = self._sought.get(partition)
        if sought is not None and self._clock() - sought < self.reseek_after_s:
            return False  # the echo of a seek back: messages queued before it
        try:
            first = await self._probe(self.topic, partition, expected)
        except ProbeFailed as exc:
            log.warning("%s[%d]: offset %d arrived where %d was expected and the cluster did not say what lies "
                        "between (%s): seeking back", self.topic, partition, offset, expected, exc)
            first = None
        else:
            if first is not None and first >= offset:
                self.gaps_accepted += 1
                log.info("%s[%d]: offsets %d to %d hold no record a consumer is given", self.topic, partition,
                         expected, offset - 1)
                return True
            log.warning("%s[%d]: offset %d arrived where %d was expected, and the cluster holds a record at %s: "
                        "the consumer skipped messages; seeking back", self.topic, partition, offset, expected, first)
        self.skips += 1
        await self._seek_back(partition, expected, "skipped")
        return False

    async def check_idle(self, delivered: Callable[[int], int | None]) -> int:
        """Seek back every partition handed nothing for ``idle_after_s`` although its consumer
        delivered a message past its next offset, found so at two checks in a row (a message delivered
        just now may still be on its way to the service's next batch); returns how many were sought
        back. ``delivered`` gives the offset of the last message the consumer delivered of a partition
        (None: nothing known). Call it only while no batch of this topic is in flight (a busy service
        is handed nothing for a reason)."""
        now = self._clock()
        found = 0
        for partition, expected in list(self._next.items()):
            if now - self._handed.get(partition, now) < self.idle_after_s:
                continue
            last = delivered(partition)
            if last is None or last <= expected:
                self._handed[partition] = now
                self._suspect.pop(partition, None)
                continue  # the message expected next was not delivered yet (or is on its way)
            if self._suspect.get(partition) != expected:
                self._suspect[partition] = expected  # checked again at the next call
                continue
            del self._suspect[partition]
            self._handed[partition] = now
            log.warning("%s[%d]: handed nothing for %.0fs at offset %d while its consumer delivered up to %d: "
                        "seeking back", self.topic, partition, self.idle_after_s, expected, last)
            self.stalls += 1
            found += 1
            await self._seek_back(partition, expected, "idle")
        return found

    async def _seek_back(self, partition: int, offset: int, reason: str) -> None:
        await self._seek(self.topic, partition, offset)
        self._sought[partition] = self._clock()
        if self._on_seek_back is not None:
            self._on_seek_back(self.topic, reason)
