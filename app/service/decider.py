"""The decider: one micro-batch of input messages in, durable decisions and their outputs out.

Order of effects per batch, which is what makes a crash at any point safe:
1. decode and validate; bad messages become dead letters;
2. decide each member's events in partition order against its state (cache, else the store); once
   a state's processed ids reached their bound, the ids it does not hold are first looked up in
   the store's event-id index, and those with a stored decision are duplicates;
3. append every member's decisions (accepted *and* rejected) atomically per member, on condition that
   the member's stored head is still the position of the state they were decided from; a member
   whose append loses to another writer is reloaded from the store and decided again;
4. snapshot each member with ``snapshot_every`` or more rows (decisions, accepted and rejected)
   stored since its latest snapshot: the rows its load folded onto that snapshot, counted on in the
   cache as appends succeed. Saving a snapshot deletes the member's snapshots older than its newest
   three, after the new one is written. Only a state the store holds is saved (its append
   succeeded, or it was just loaded and got only duplicates), so a snapshot is always the fold of
   the member's rows up to its position;
5. publish ledger entries, rejections and dead letters, and wait for the cluster's acknowledgement
   (an output that can never be published becomes a dead letter instead, see Outbox: its decision
   stays stored). A member's outputs, its new decisions and the stored outcomes of its duplicates
   alike, go out in (seq, sub) order: after a crash between 3 and 5 the redelivered batch holds
   stored, never published decisions before new ones;
6. save the durable input position (next offset per partition).
``decide`` does 1 to 4, ``publish`` 5 and 6, and ``process`` both. The worker decides the next
batch while the previous one publishes (`PublishPipeline`), so the input offsets it commits may run
ahead of the durable position, and a restarted or new owner of a partition starts at the durable
position. A redelivered event is a duplicate of its stored decision: its outcome is published again
and nothing else changes.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field

from app.domain.decide import Duplicate, step
from app.domain.events import DownloadEvent
from app.domain.history import ACCEPTED, Source, StoredDecision, to_stored
from app.domain.state import MemberState
from app.domain.validation import MalformedEvent, check_skew, validate
from app.service.member_cache import MemberCache
from app.service.ports import (
    BatchTrace,
    DeadLetter,
    DecodeError,
    EventStore,
    Headers,
    InputMessage,
    LoadedState,
    MessageCodec,
    Outbox,
    ProgressStore,
    Tracer,
)
from app.service.progress import save_progress
from app.service.tracing import NO_BATCH_TRACE, NO_TRACER

log = logging.getLogger(__name__)

MAX_APPEND_ATTEMPTS = 5
DEFAULT_MAX_FUTURE_SKEW_MS = 3_600_000  # 1 hour (LEDGER_MAX_FUTURE_SKEW_MS)


@dataclass
class DecisionReport:
    messages: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by reason
    duplicates: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)  # by error code
    conflicts: int = 0
    store_behind: int = 0  # members whose stored head stood behind the state they were decided from
    snapshots: int = 0
    diverted: Counter[str] = field(default_factory=Counter)  # outputs published as dead letters instead, by code
    truncated: int = 0  # dead letters cut to fit the producer's limit
    dropped: int = 0  # outputs that could not be published in any form
    cache_hits: int = 0  # members of the batch whose state came from the cache
    loaded: int = 0  # members of the batch whose state was loaded from the store
    rows_folded: int = 0  # rows after their latest snapshot those loads folded


@dataclass
class _MemberOutcome:
    state: MemberState
    decisions: list[StoredDecision]
    duplicates: list[DownloadEvent]  # decided before this batch: their stored outcome is published again
    duplicates_in_batch: int = 0  # the same event twice in one batch: its outcome is published once
    # Stored decisions of events older than the state's processed ids, by event id (found beforehand).
    found: dict[str, StoredDecision] = field(default_factory=dict)


@dataclass
class DecidedBatch:
    """A batch whose decisions are durable (steps 1 to 4) and whose outputs are not yet published."""
    messages: list[InputMessage]
    outputs: list[tuple[str, StoredDecision]]  # (member_id, decision) in the order to publish
    dead_letters: list[DeadLetter]
    report: DecisionReport
    trace: BatchTrace = NO_BATCH_TRACE  # the batch's trace until its publish is done (or first failed)
    carry: Mapping[Source, Headers] = field(default_factory=dict)  # headers each input's outputs carry
    started: float = 0.0  # time.perf_counter() when its decision began
    _scope: ExitStack | None = None  # closes the trace

    def __len__(self) -> int:
        """Its input messages."""
        return len(self.messages)

    def end_trace(self, error: BaseException | None) -> None:
        """End the batch's trace (failed if ``error``); a publish tried again is not traced."""
        scope, self._scope, self.trace = self._scope, None, NO_BATCH_TRACE
        if scope is not None:
            if error is None:
                scope.close()
            else:
                scope.__exit__(type(error), error, error.__traceback__)


class Decider:
    def __init__(self, store: EventStore, progress: ProgressStore, outbox: Outbox, codec: MessageCodec,
                 cache: MemberCache[LoadedState], snapshot_every: int = 100, *,
                 max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS, tracer: Tracer = NO_TRACER):
        """``cache``: member states with their rows since the latest snapshot; ``snapshot_every``:
        how many rows (decisions, accepted and rejected) a member gets between two snapshots;
        ``max_future_skew_ms``: how far an event's occurred_at may be after its message's
        timestamp before it is a dead letter ``clock_skew`` (0: no limit); ``tracer``: continues each
        message's trace through the batch's stages (default: none)."""
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {snapshot_every}")
        if max_future_skew_ms < 0:
            raise ValueError(f"max_future_skew_ms must be >= 0 (0 turns the guard off), got {max_future_skew_ms}")
        self.store = store
        self.progress = progress
        self.outbox = outbox
        self.codec = codec
        self.cache = cache
        self.snapshot_every = snapshot_every
        self.max_future_skew_ms = max_future_skew_ms
        self.tracer = tracer

    async def process(self, messages: list[InputMessage]) -> DecisionReport:
        """Every effect of the batch, in order, before it returns."""
        return await self.publish(await self.decide(messages))

    async def decide(self, messages: list[InputMessage]) -> DecidedBatch:
        """Steps 1 to 4, and the member states into the cache: the batch's decisions are durable and
        its outputs ready for ``publish`` (steps 5 and 6). The batch's trace stays open until then."""
        started = time.perf_counter()
        scope = ExitStack()
        trace = scope.enter_context(self.tracer.batch("decider", messages))
        try:
            decided = await self._decide_batch(messages, trace)
        except BaseException as exc:
            scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        decided.trace, decided.carry, decided._scope, decided.started = trace, trace.carry(), scope, started
        return decided

    async def publish(self, decided: DecidedBatch) -> DecisionReport:
        """Steps 5 and 6 of a decided batch. Safe to call again after it raised: the outputs are
        published again (the projectors drop a ledger entry they hold by its seq)."""
        try:
            with decided.trace.stage("publish"):
                published = await self.outbox.publish(
                    decided.outputs, decided.dead_letters,
                    {Source(m.topic, m.partition, m.offset): m for m in decided.messages}, decided.carry)
            await save_progress(self.progress, decided.messages)
        except BaseException as exc:
            decided.end_trace(exc)
            raise
        decided.end_trace(None)
        report = decided.report
        if published is not None:
            report.diverted.update(published.diverted)
            report.truncated += published.truncated
            report.dropped += published.dropped
        return report

    async def _decide_batch(self, messages: list[InputMessage], trace: BatchTrace) -> DecidedBatch:
        report = DecisionReport(messages=len(messages))
        dead_letters: list[DeadLetter] = []
        by_member: dict[str, list[tuple[DownloadEvent, Source]]] = {}
        partition_of: dict[str, int] = {}
        with trace.stage("decode"):
            for m in messages:
                event = self._decode(m, dead_letters, report)
                if event is not None:
                    by_member.setdefault(event.member_id, []).append((event, Source(m.topic, m.partition, m.offset)))
                    partition_of[event.member_id] = m.partition

        with trace.stage("load"):
            loaded = await self._states(list(by_member), report)
        states = {m: x.state for m, x in loaded.items()}
        rows = {m: x.rows_since_snapshot for m, x in loaded.items()}
        outcomes = await self._decide_and_append(states, rows, by_member, report, trace)

        republished = await asyncio.gather(*(self._republish(m, o) for m, o in outcomes.items()))
        outputs: list[tuple[str, StoredDecision]] = []
        for (member_id, outcome), again in zip(outcomes.items(), republished):
            # In (seq, sub) order: a redelivery can hold stored, never published decisions (a crash
            # between append and publish) before new ones, and the member's ledger is in seq order.
            outputs += sorted([(member_id, d) for d in outcome.decisions] + again, key=_position)
            self._count(outcome, report)
        with trace.stage("snapshot"):
            report.snapshots, rows_after = await self._snapshot(rows, outcomes)
        for member_id, outcome in outcomes.items():
            self.cache.put(member_id, partition_of[member_id], LoadedState(outcome.state, rows_after[member_id]))
        return DecidedBatch(messages, outputs, dead_letters, report)

    # --- steps ----------------------------------------------------------------------------

    def _decode(self, m: InputMessage, dead_letters: list[DeadLetter], report: DecisionReport) -> DownloadEvent | None:
        try:
            return decode_input(self.codec, m, self.max_future_skew_ms)
        except DecodeError as exc:
            kind, code, detail = "undecodable", exc.code, exc.message
        except MalformedEvent as exc:
            kind, code, detail = "malformed", exc.code, exc.detail
        report.dead_letters[code] += 1
        dead_letters.append(DeadLetter(m, kind, code, detail))
        return None

    async def _states(self, member_ids: list[str], report: DecisionReport) -> dict[str, LoadedState]:
        states = {m: s for m in member_ids if (s := self.cache.get(m)) is not None}
        missing = [m for m in member_ids if m not in states]
        report.cache_hits += len(states)
        if missing:
            loaded = await self.store.load_many(missing)
            report.loaded += len(loaded)
            report.rows_folded += sum(x.rows_since_snapshot for x in loaded.values())
            states.update(loaded)
        return states

    async def _decide(self, states: dict[str, MemberState],
                      by_member: dict[str, list[tuple[DownloadEvent, Source]]]) -> dict[str, _MemberOutcome]:
        """Decide each member's events. A state keeps the ids of its latest PROCESSED_IDS_BOUND or so
        events only: once it reached that bound, the ids it does not hold are asked of the store's
        event-id lookup (one query per such member), and those with a stored decision are duplicates.
        A member below the bound holds every id it ever processed, so it costs nothing extra."""
        asks: dict[str, list[str]] = {}
        for m, events in by_member.items():
            processed = states[m].processed
            if processed.at_bound:
                unknown = list(dict.fromkeys(e.event_id for e, _ in events if e.event_id not in processed))
                if unknown:
                    asks[m] = unknown
        found = dict(zip(asks, await asyncio.gather(*(self.store.find_many(m, ids) for m, ids in asks.items()))))
        return {m: _decide_member(states[m], events, found.get(m, {})) for m, events in by_member.items()}

    async def _decide_and_append(self, states: dict[str, MemberState], rows: dict[str, int],
                                 by_member: dict[str, list[tuple[DownloadEvent, Source]]],
                                 report: DecisionReport, trace: BatchTrace) -> dict[str, _MemberOutcome]:
        """``states`` and ``rows`` (since the latest snapshot) are updated for reloaded members. A
        member that lost its append is reloaded and decided again within the stage "append"."""
        with trace.stage("decide"):
            outcomes = await self._decide(states, by_member)
        with trace.stage("append"):
            return await self._append(states, rows, by_member, report, outcomes)

    async def _append(self, states: dict[str, MemberState], rows: dict[str, int],
                      by_member: dict[str, list[tuple[DownloadEvent, Source]]], report: DecisionReport,
                      outcomes: dict[str, _MemberOutcome]) -> dict[str, _MemberOutcome]:
        pending = {m: o.decisions for m, o in outcomes.items() if o.decisions}
        for _ in range(MAX_APPEND_ATTEMPTS):
            lost = await self.store.append(pending, {m: states[m].position for m in pending})
            if not lost:
                return outcomes
            report.conflicts += len(lost)
            log.warning("append conflict for %d member(s); reloading them from the store", len(lost))
            for m in lost:
                self.cache.drop(m)
            reloaded = await self.store.load_many(lost)
            fresh = {m: x.state for m, x in reloaded.items()}
            report.store_behind += _report_store_behind(states, fresh)
            states.update(fresh)
            rows.update({m: x.rows_since_snapshot for m, x in reloaded.items()})
            outcomes.update(await self._decide(fresh, {m: by_member[m] for m in lost}))
            pending = {m: outcomes[m].decisions for m in lost if outcomes[m].decisions}
        raise RuntimeError(f"append kept conflicting after {MAX_APPEND_ATTEMPTS} attempts: {sorted(pending)[:5]}")

    async def _republish(self, member_id: str, outcome: _MemberOutcome) -> list[tuple[str, StoredDecision]]:
        """The stored outcomes of the member's duplicates: one lookup for all of them, then a read of
        the member's history for any the lookup lacks (decided before it existed)."""
        if not outcome.duplicates:
            return []
        stored = dict(outcome.found)
        missing = list(dict.fromkeys(e.event_id for e in outcome.duplicates if e.event_id not in stored))
        if missing:
            stored.update(await self.store.find_many(member_id, missing))
            for event_id in missing:
                if event_id not in stored and (d := await self.store.find(member_id, event_id)) is not None:
                    stored[event_id] = d
        return [(member_id, stored[e.event_id]) for e in outcome.duplicates if e.event_id in stored]

    @staticmethod
    def _count(outcome: _MemberOutcome, report: DecisionReport) -> None:
        report.duplicates += len(outcome.duplicates) + outcome.duplicates_in_batch
        for d in outcome.decisions:
            if d.kind == ACCEPTED:
                report.accepted += 1
            else:
                report.rejected[d.reason or ""] += 1

    async def _snapshot(self, rows: dict[str, int],
                        outcomes: dict[str, _MemberOutcome]) -> tuple[int, dict[str, int]]:
        """Snapshot the members with ``snapshot_every`` or more rows since their latest snapshot
        (``rows``: before this batch's appends, which all succeeded; a member just loaded with
        that many rows and only duplicates in the batch is due as well); returns how many were
        snapshotted and each member's rows since its latest snapshot now (0 once snapshotted)."""
        after = {m: rows[m] + len(o.decisions) for m, o in outcomes.items()}
        due = [m for m, n in after.items() if n >= self.snapshot_every]
        await asyncio.gather(*(self.store.save_snapshot(outcomes[m].state) for m in due))
        after.update(dict.fromkeys(due, 0))
        return len(due), after

    def drop_partitions(self, partitions: set[int]) -> int:
        return self.cache.drop_partitions(partitions)


def decode_input(codec: MessageCodec, m: InputMessage,
                 max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS) -> DownloadEvent:
    """The event of an input message, or DecodeError / MalformedEvent (a dead letter).

    Checked in this order: decoding, the event's fields, the message key, then the clock skew.
    The key must be the event's member_id: a message with no key or another member's key may sit
    in another partition than the member's other events, and one member must never be decided in
    two partitions. The clock skew compares occurred_at with the message's own timestamp, which
    Kafka stores with the message: a redelivery decides the same, whatever the wall clock says.
    """
    if m.value is None:
        raise DecodeError("truncated", "empty message value")
    event = codec.decode_event(m.value)
    validate(event)
    if m.key != event.member_id.encode():
        got = "the message has no key" if m.key is None else f"message key {m.key!r}"
        raise MalformedEvent("key_mismatch", f"{got}; the key must be the member_id {event.member_id!r}")
    check_skew(event, m.timestamp, max_future_skew_ms)
    return event


def _report_store_behind(decided_from: dict[str, MemberState], stored: dict[str, MemberState]) -> int:
    """Members whose stored head stands behind the state their append was decided from. Writers only
    ever move a head forward, and that state was one the store held, so the store has lost writes it
    acknowledged (a single Cassandra node that acknowledges before its commit log is on disk, a
    restore from an older backup): the ledger can hold decisions the store no longer has, and the
    events decided now take their seqs. Logged as an error for the operator, counted; the members
    are decided again from what the store holds, as after any lost append."""
    behind = [m for m, state in stored.items() if state.position < decided_from[m].position]
    for m in behind:
        log.error("the event store's head of %s is %s, behind %s, a position it held before: it lost writes it "
                  "had acknowledged; decisions published at the positions after %s are no longer stored",
                  m, stored[m].position, decided_from[m].position, stored[m].position)
    return len(behind)


def _position(output: tuple[str, StoredDecision]) -> tuple[int, int]:
    return output[1].position


def _decide_member(state: MemberState, events: list[tuple[DownloadEvent, Source]],
                   found: dict[str, StoredDecision]) -> _MemberOutcome:
    """``found``: stored decisions of events the state no longer holds the ids of."""
    outcome = _MemberOutcome(state, [], [], found=found)
    decided_here: set[str] = set()
    for event, source in events:
        if event.event_id in found:
            outcome.duplicates.append(event)
            continue
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
