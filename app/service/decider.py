"""The decider: one micro-batch of input messages in, durable decisions and their outputs out.

Order of effects per batch, which is what makes a crash at any point safe:
1. decode and validate; bad messages become dead letters;
2. decide each member's events in partition order against its state (cache, else the store);
3. append every member's decisions (accepted *and* rejected) conditionally and atomically per member;
   a member whose append loses to another writer is reloaded from the store and decided again;
4. snapshot members that crossed a multiple of ``snapshot_every``;
5. publish ledger entries, rejections and dead letters, and wait for the cluster's acknowledgement
   (an output that can never be published becomes a dead letter instead, see Outbox: its decision
   stays stored);
6. save the durable input position (next offset per partition);
and only after ``process`` returns may the caller commit the input offsets. A redelivered event is
a duplicate of its stored decision: its outcome is published again and nothing else changes.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from app.domain.decide import Duplicate, step
from app.domain.events import DownloadEvent
from app.domain.history import ACCEPTED, Source, StoredDecision, to_stored
from app.domain.state import MemberState
from app.domain.validation import MalformedEvent, validate
from app.service.member_cache import MemberCache
from app.service.ports import DeadLetter, DecodeError, EventStore, InputMessage, MessageCodec, Outbox, ProgressStore

log = logging.getLogger(__name__)

MAX_APPEND_ATTEMPTS = 5


@dataclass
class DecisionReport:
    messages: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)  # by reason
    duplicates: int = 0
    dead_letters: Counter = field(default_factory=Counter)  # by error code
    conflicts: int = 0
    snapshots: int = 0
    diverted: Counter = field(default_factory=Counter)  # outputs published as dead letters instead, by code
    truncated: int = 0  # dead letters cut to fit the producer's limit
    dropped: int = 0  # outputs that could not be published in any form


@dataclass
class _MemberOutcome:
    state: MemberState
    decisions: list[StoredDecision]
    duplicates: list[DownloadEvent]  # decided before this batch: their stored outcome is published again
    duplicates_in_batch: int = 0  # the same event twice in one batch: its outcome is published once


class Decider:
    def __init__(self, store: EventStore, progress: ProgressStore, outbox: Outbox, codec: MessageCodec,
                 cache: MemberCache[MemberState], snapshot_every: int = 100):
        self.store = store
        self.progress = progress
        self.outbox = outbox
        self.codec = codec
        self.cache = cache
        self.snapshot_every = snapshot_every

    async def process(self, messages: list[InputMessage]) -> DecisionReport:
        report = DecisionReport(messages=len(messages))
        dead_letters: list[DeadLetter] = []
        by_member: dict[str, list[tuple[DownloadEvent, Source]]] = {}
        partition_of: dict[str, int] = {}
        for m in messages:
            event = self._decode(m, dead_letters, report)
            if event is not None:
                by_member.setdefault(event.member_id, []).append((event, Source(m.topic, m.partition, m.offset)))
                partition_of[event.member_id] = m.partition

        states = await self._states(list(by_member))
        outcomes = await self._decide_and_append(states, by_member, report)

        outputs: list[tuple[str, StoredDecision]] = []
        for member_id, outcome in outcomes.items():
            outputs += [(member_id, d) for d in outcome.decisions]
            outputs += await self._republish(member_id, outcome.duplicates)
            self._count(outcome, report)
        report.snapshots = await self._snapshot(states, outcomes)
        published = await self.outbox.publish(outputs, dead_letters,
                                              {Source(m.topic, m.partition, m.offset): m for m in messages})
        if published is not None:
            report.diverted.update(published.diverted)
            report.truncated += published.truncated
            report.dropped += published.dropped
        await self._save_progress(messages)
        for member_id, outcome in outcomes.items():
            self.cache.put(member_id, partition_of[member_id], outcome.state)
        return report

    # --- steps ----------------------------------------------------------------------------

    def _decode(self, m: InputMessage, dead_letters: list[DeadLetter], report: DecisionReport) -> DownloadEvent | None:
        try:
            if m.value is None:
                raise DecodeError("truncated", "empty message value")
            event = self.codec.decode_event(m.value)
            validate(event)
            if m.key is not None and m.key != event.member_id.encode():
                raise MalformedEvent("key_mismatch", f"message key {m.key!r} is not the member_id {event.member_id!r}")
            return event
        except DecodeError as exc:
            kind, code, detail = "undecodable", exc.code, exc.message
        except MalformedEvent as exc:
            kind, code, detail = "malformed", exc.code, exc.detail
        report.dead_letters[code] += 1
        dead_letters.append(DeadLetter(m, kind, code, detail))
        return None

    async def _states(self, member_ids: list[str]) -> dict[str, MemberState]:
        states = {m: s for m in member_ids if (s := self.cache.get(m)) is not None}
        missing = [m for m in member_ids if m not in states]
        if missing:
            states.update(await self.store.load_many(missing))
        return states

    async def _decide_and_append(self, states, by_member, report) -> dict[str, _MemberOutcome]:
        outcomes = {m: _decide_member(states[m], events) for m, events in by_member.items()}
        pending = {m: o.decisions for m, o in outcomes.items() if o.decisions}
        for _ in range(MAX_APPEND_ATTEMPTS):
            lost = await self.store.append(pending)
            if not lost:
                return outcomes
            report.conflicts += len(lost)
            log.warning("append conflict for %d member(s); reloading them from the store", len(lost))
            for m in lost:
                self.cache.drop(m)
            fresh = await self.store.load_many(lost)
            for m in lost:
                states[m] = fresh[m]
                outcomes[m] = _decide_member(fresh[m], by_member[m])
            pending = {m: outcomes[m].decisions for m in lost if outcomes[m].decisions}
        raise RuntimeError(f"append kept conflicting after {MAX_APPEND_ATTEMPTS} attempts: {sorted(pending)[:5]}")

    async def _republish(self, member_id: str, duplicates: list[DownloadEvent]) -> list[tuple[str, StoredDecision]]:
        outputs = []
        for event in duplicates:
            stored = await self.store.find(member_id, event.event_id)
            if stored is not None:  # older than the store's history is only possible past the id bound
                outputs.append((member_id, stored))
        return outputs

    @staticmethod
    def _count(outcome: _MemberOutcome, report: DecisionReport) -> None:
        report.duplicates += len(outcome.duplicates) + outcome.duplicates_in_batch
        for d in outcome.decisions:
            if d.kind == ACCEPTED:
                report.accepted += 1
            else:
                report.rejected[d.reason] += 1

    async def _snapshot(self, before: dict[str, MemberState], outcomes: dict[str, _MemberOutcome]) -> int:
        n = self.snapshot_every
        due = [o.state for m, o in outcomes.items() if o.state.seq // n > before[m].seq // n]
        await asyncio.gather(*(self.store.save_snapshot(state) for state in due))
        return len(due)

    async def _save_progress(self, messages: list[InputMessage]) -> None:
        by_topic: dict[str, dict[int, int]] = {}
        for m in messages:
            offsets = by_topic.setdefault(m.topic, {})
            offsets[m.partition] = max(offsets.get(m.partition, 0), m.offset + 1)
        for topic, offsets in by_topic.items():
            await self.progress.save(topic, offsets)

    def drop_partitions(self, partitions: set[int]) -> int:
        return self.cache.drop_partitions(partitions)


def _decide_member(state: MemberState, events: list[tuple[DownloadEvent, Source]]) -> _MemberOutcome:
    outcome = _MemberOutcome(state, [], [])
    decided_here: set[str] = set()
    for event, source in events:
        decision, state = step(state, event)
        if isinstance(decision, Duplicate):
            if event.event_id in decided_here:
                outcome.duplicates_in_batch += 1
            else:
                outcome.duplicates.append(event)
            continue
        outcome.decisions += to_stored(decision, event, state, source)
        decided_here.add(event.event_id)
    outcome.state = state
    return outcome
