"""Verification of a projection namespace against the event store, the source of truth.

For every member, the expected state is the fold of the member's durable history
(`EventStore.load`: snapshot + accepted events + rejections). Each store of the namespace is
compared with it: the Redis view and the Cassandra summary (its JSON state). A store agrees when it has the same ``seq``
and the same `app.domain.views.digest` (which ignores the clock and the processed ids, so a view
folded from the ledger and a state folded from the store compare equal).

The live system keeps deciding while a verification runs, so a view can be *behind* the store:
- ``allow_behind`` (the replay): a view at an earlier seq is accepted when it equals the fold of
  the store's accepted events up to that seq (it is a correct prefix); the report carries, for each
  such member, the state at the store's seq, for the replay to top the namespace up before it
  switches readers;
- ``settle_s`` (the `ledger verify` command): members behind or missing are checked again until
  they caught up or ``settle_s`` has passed, so a projector's normal lag is not reported.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from app.domain.decide import evolve
from app.domain.events import Recorded
from app.domain.state import MemberState
from app.domain.views import digest
from app.service.ports import EventStore, ReadModels, ViewStore
from app.service.retry import for_chunks, with_retries

log = logging.getLogger(__name__)

MISSING = "missing"  # the store has no view of a member the event store knows
UNKNOWN = "unknown"  # the store has a view of a member the event store does not know
SEQ = "seq"  # the seq differs (ahead, or behind when not allowed)
DIGEST = "digest"  # same seq (or a prefix), different content

REDIS = "redis"
CASSANDRA = "cassandra"  # the summary row's JSON state


@dataclass(frozen=True, slots=True)
class Mismatch:
    member_id: str
    store: str
    kind: str
    expected_seq: int | None  # the event store's seq (None: unknown member)
    actual_seq: int | None  # the view's seq (None: no view)

    def describe(self) -> str:
        if self.kind == MISSING:
            return f"{self.member_id}: missing from {self.store} (event store seq {self.expected_seq})"
        if self.kind == UNKNOWN:
            return f"{self.member_id}: in {self.store} at seq {self.actual_seq} but not in the event store"
        if self.kind == SEQ:
            where = "ahead of" if (self.actual_seq or 0) > (self.expected_seq or 0) else "behind"
            return (f"{self.member_id}: {self.store} seq {self.actual_seq} is {where} "
                    f"the event store seq {self.expected_seq}")
        return (f"{self.member_id}: {self.store} digest differs from the event store's fold "
                f"at seq {self.actual_seq}")


@dataclass(frozen=True, slots=True)
class Behind:
    """A member whose views are a correct prefix of the event store (allow_behind)."""

    member_id: str
    view_seq: int  # the lowest seq of its views (0: no view yet)
    store_seq: int
    state: MemberState  # the fold of the accepted events up to store_seq, for the top-up


@dataclass
class VerifyReport:
    namespace: str
    checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    behind: list[Behind] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def differing(self) -> list[str]:
        return sorted({m.member_id for m in self.mismatches})

    def summary(self) -> str:
        if self.ok:
            extra = f"; {len(self.behind)} behind the event store by events decided meanwhile" if self.behind else ""
            return (f"namespace {self.namespace}: {self.checked} member(s) equal to the event store{extra} "
                    f"({self.seconds:.1f}s)")
        return (f"namespace {self.namespace}: {len(self.differing)} of {self.checked} member(s) differ "
                f"from the event store ({len(self.mismatches)} mismatch(es), {self.seconds:.1f}s)")


def compare(store: str, member_id: str, expected: MemberState | None, actual: MemberState | None,
            expected_digest: str | None = None) -> Mismatch | None:
    """The difference between a store's view and the event store's fold (None when they agree).

    ``expected`` None or at seq 0 means no view is expected (a member with only rejections has none);
    ``expected_digest`` is digest(expected), when the caller already has it."""
    expected_seq = expected.seq if expected is not None and expected.seq > 0 else None
    if actual is None:
        return None if expected_seq is None else Mismatch(member_id, store, MISSING, expected_seq, None)
    if expected_seq is None:
        return Mismatch(member_id, store, UNKNOWN, None, actual.seq)
    if actual.seq != expected_seq:
        return Mismatch(member_id, store, SEQ, expected_seq, actual.seq)
    if digest(actual) != (expected_digest or digest(expected or actual)):
        return Mismatch(member_id, store, DIGEST, expected_seq, actual.seq)
    return None


def fold_accepted(member_id: str, accepted: Iterable[Recorded]) -> dict[int, MemberState]:
    """The state after each accepted event (seq -> state), from the empty state."""
    state = MemberState.empty(member_id)
    states = {0: state}
    for recorded in accepted:
        state = evolve(state, recorded)
        states[state.seq] = state
    return states


class Verifier:
    def __init__(self, event_store: EventStore, views: ViewStore, read_models: ReadModels | None = None, *,
                 chunk: int = 50, concurrency: int = 4, transient: tuple[type[BaseException], ...] = ()):
        """``views`` and ``read_models`` are the namespace's stores (``read_models`` None: check the
        views only); a chunk failing with one of the ``transient`` errors is read again."""
        self.event_store = event_store
        self.views = views
        self.read_models = read_models
        self.chunk = chunk
        self.concurrency = concurrency
        self.transient = transient

    async def verify(self, namespace: str, member_ids: Iterable[str], *, allow_behind: bool = False,
                     settle_s: float = 0.0, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        started = time.monotonic()
        members = sorted(set(member_ids))
        report = VerifyReport(namespace, checked=len(members))
        results: dict[str, tuple[list[Mismatch], Behind | None]] = {}

        async def check_chunk(chunk: Sequence[str]) -> None:
            outcomes = await with_retries(lambda: self._check(chunk, allow_behind), self.transient)
            for member_id, outcome in zip(chunk, outcomes):
                results[member_id] = outcome

        await for_chunks(members, self.chunk, self.concurrency, check_chunk, progress)
        deadline = time.monotonic() + settle_s
        while settle_s > 0:
            lagging = [m for m, (mismatches, _) in results.items() if mismatches and all(_lagging(x) for x in mismatches)]
            if not lagging or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            await for_chunks(lagging, self.chunk, self.concurrency, check_chunk, None)

        for member_id in members:
            mismatches, behind = results[member_id]
            report.mismatches.extend(mismatches)
            if behind is not None:
                report.behind.append(behind)
        report.seconds = time.monotonic() - started
        return report

    async def _check(self, chunk: Sequence[str], allow_behind: bool) -> list[tuple[list[Mismatch], Behind | None]]:
        members = list(chunk)
        expected_states, redis_views, cassandra_states = await asyncio.gather(
            asyncio.gather(*(self.event_store.load(m) for m in members)),
            self.views.read_many(members),
            self._read_models(members),
        )
        outcomes = []
        for member_id, expected in zip(members, expected_states):
            actual = {REDIS: redis_views.get(member_id)}
            if self.read_models is not None:
                actual[CASSANDRA] = cassandra_states.get(member_id)
            outcomes.append(await self._member(member_id, expected, actual, allow_behind))
        return outcomes

    async def _read_models(self, member_ids: list[str]) -> dict[str, MemberState]:
        return {} if self.read_models is None else await self.read_models.read_states(member_ids)

    async def _member(self, member_id: str, expected: MemberState, actual: dict[str, MemberState | None],
                      allow_behind: bool) -> tuple[list[Mismatch], Behind | None]:
        expected_digest = digest(expected) if expected.seq > 0 else None  # once, not once per store
        found = [m for store, view in actual.items()
                 if (m := compare(store, member_id, expected, view, expected_digest)) is not None]
        if not allow_behind or not found or not all(_lagging(m) for m in found):
            return found, None
        # Every difference is "behind": check that each view is the store's history up to its seq.
        history = fold_accepted(member_id, await self.event_store.accepted_between(member_id, 0, expected.seq))
        final = history.get(expected.seq)
        if final is None:  # the store's accepted events do not add up to its own seq: report as is
            return found, None
        really = []
        for mismatch in found:
            view = actual[mismatch.store]
            if view is not None and digest(view) != digest(history.get(view.seq, final)):
                really.append(Mismatch(member_id, mismatch.store, DIGEST, expected.seq, view.seq))
        if really:
            return really, None
        view_seq = min((v.seq if v is not None else 0) for v in actual.values())
        return [], Behind(member_id, view_seq, expected.seq, final)


def _lagging(mismatch: Mismatch) -> bool:
    """Behind the event store (or not there yet): what a projector's lag looks like."""
    if mismatch.kind == MISSING:
        return True
    return mismatch.kind == SEQ and (mismatch.actual_seq or 0) < (mismatch.expected_seq or 0)

