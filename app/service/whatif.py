"""What-if: decide members' recorded inputs again under a candidate policy (DOMAIN.md "Policies").

For each member, its decided events are read from the event store a page at a time (the
``HistoryReader`` port), decided again in the same order from the empty state with the policy, and
each outcome is compared with the recorded one. Duplicates are not stored, so they are not
re-decided. The service holds a read-only port and returns values: a what-if writes nothing.

Until the first event whose outcome flips between accepted and rejected, the state under the policy
*is* the recorded state (deciding an event the way it was decided gives the state folding its stored
row gives); from then on the recorded history is folded alongside, so the report can compare both
states at the member's final clock.

Members are processed ``concurrency`` at a time from a stream of ids; each holds one page of its
history at a time, and the report keeps counters and a bounded list of examples, so the memory of a
what-if over every member does not grow with their number or their histories.
"""
from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.domain.decide import Accepted, Rejected, step
from app.domain.events import DownloadEvent
from app.domain.history import ACCEPTED, StoredDecision, fold
from app.domain.policy import Policy
from app.domain.state import MemberState
from app.service.ports import HistoryReader

PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class Window:
    """Which decisions a what-if re-decides, by the member clock at decision (it never goes back, so
    each bound cuts a member's history in two). Before ``from_ms`` the recorded outcomes stand (the
    policy takes effect at ``from_ms``); from ``to_ms`` on nothing is read (the what-if ends there).
    A window that ends where or before it starts re-decides nothing."""

    from_ms: int | None = None
    to_ms: int | None = None


ALL_TIME = Window()


@dataclass(frozen=True, slots=True)
class Flip:
    """An event whose outcome under the policy differs from the recorded one."""

    position: tuple[int, int]  # (seq, sub) of the recorded decision
    event: DownloadEvent
    clock: int
    recorded: str  # "accepted" or the recorded reason
    recorded_detail: str | None
    outcome: str  # "accepted" or the reason under the policy
    detail: str | None

    @property
    def transition(self) -> tuple[str, str]:
        return self.recorded, self.outcome


@dataclass
class MemberWhatIf:
    """One member's what-if: its re-decided events, the flips (the first ``keep`` of them) and both
    final states; ``clock`` is the member clock after the last decision read."""

    member_id: str
    recorded: MemberState
    whatif: MemberState
    rows: int = 0  # decisions read, the ones before the window included
    events: int = 0  # decisions re-decided
    flip_count: int = 0
    flips: list[Flip] = field(default_factory=list)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def found(self) -> bool:
        return self.rows > 0

    @property
    def clock(self) -> int:
        return self.recorded.clock

    def active_downloads(self) -> tuple[int, int]:
        """(recorded, under the policy) at the member's final clock."""
        t = self.clock
        return len(self.recorded.active_licenses(t)), len(self.whatif.active_licenses(t))

    def devices_in_use(self) -> tuple[int, int]:
        t = self.clock
        return len(self.recorded.devices_in_use(t)), len(self.whatif.devices_in_use(t))


@dataclass(frozen=True, slots=True)
class Example:
    member_id: str
    flip_count: int
    first: Flip
    active_downloads: tuple[int, int]
    devices_in_use: tuple[int, int]


@dataclass
class WhatIfReport:
    members: int = 0  # member ids processed
    unknown: int = 0  # of which with no stored decision
    events: int = 0  # decisions re-decided
    flips: Counter[tuple[str, str]] = field(default_factory=Counter)  # (recorded, under the policy) -> count
    members_affected: int = 0
    active_downloads: tuple[int, int] = (0, 0)  # (recorded, under the policy), summed at each member's clock
    devices_in_use: tuple[int, int] = (0, 0)
    examples: list[Example] = field(default_factory=list)  # the members with the most flips
    seconds: float = 0.0
    max_examples: int = 10

    @property
    def flip_total(self) -> int:
        return sum(self.flips.values())

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def add(self, m: MemberWhatIf) -> None:
        self.members += 1
        if not m.found:
            self.unknown += 1
            return
        self.events += m.events
        self.flips.update(m.transitions)
        downloads, devices = m.active_downloads(), m.devices_in_use()
        self.active_downloads = _plus(self.active_downloads, downloads)
        self.devices_in_use = _plus(self.devices_in_use, devices)
        if m.flip_count:
            self.members_affected += 1
            if self.max_examples > 0:
                self.examples.append(Example(m.member_id, m.flip_count, m.flips[0], downloads, devices))
                if len(self.examples) > 2 * self.max_examples:
                    self._trim()

    def _trim(self) -> None:
        self.examples.sort(key=lambda e: (-e.flip_count, e.member_id))
        del self.examples[self.max_examples:]

    def finish(self, seconds: float) -> WhatIfReport:
        self.seconds = seconds
        self._trim()
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the report of `ledger whatif --json`."""
        return {
            "members": self.members,
            "unknown_members": self.unknown,
            "members_affected": self.members_affected,
            "events_redecided": self.events,
            "flips": self.flip_total,
            "transitions": [{"recorded": a, "whatif": b, "count": n} for (a, b), n in _by_count(self.flips)],
            "active_downloads": {"recorded": self.active_downloads[0], "whatif": self.active_downloads[1],
                                 "change": self.active_downloads[1] - self.active_downloads[0]},
            "devices_in_use": {"recorded": self.devices_in_use[0], "whatif": self.devices_in_use[1],
                               "change": self.devices_in_use[1] - self.devices_in_use[0]},
            "examples": [{"member_id": e.member_id, "flips": e.flip_count, "first": flip_dict(e.first),
                          "active_downloads": list(e.active_downloads), "devices_in_use": list(e.devices_in_use)}
                         for e in self.examples],
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events_per_second, 1),
        }


def flip_dict(f: Flip) -> dict[str, Any]:
    return {"seq": f.position[0], "sub": f.position[1], "event_id": f.event.event_id,
            "type": type(f.event.payload).__name__, "occurred_at": f.event.occurred_at, "clock": f.clock,
            "recorded": {"outcome": _kind(f.recorded), "reason": _reason(f.recorded), "detail": f.recorded_detail},
            "whatif": {"outcome": _kind(f.outcome), "reason": _reason(f.outcome), "detail": f.detail}}


def transition_label(recorded: str, outcome: str) -> str:
    return f"{recorded} -> {outcome}"


class WhatIf:
    """Re-decides members' histories under a policy; ``concurrency`` members at a time."""

    def __init__(self, history: HistoryReader, *, concurrency: int = 8, page_size: int = PAGE_SIZE):
        if concurrency < 1 or page_size < 1:
            raise ValueError("concurrency and page_size must be at least 1")
        self.history = history
        self.concurrency = concurrency
        self.page_size = page_size

    async def member(self, member_id: str, policy: Policy, *, window: Window = ALL_TIME,
                     keep_flips: int = 1) -> MemberWhatIf:
        """One member's what-if, keeping its first ``keep_flips`` flips (all are counted)."""
        empty = MemberState.empty(member_id)
        result = MemberWhatIf(member_id, recorded=empty, whatif=empty)
        diverged = False
        after: tuple[int, int] | None = None
        while True:
            page = await self.history.page(member_id, after, self.page_size)
            for d in page:
                if window.to_ms is not None and d.clock >= window.to_ms:
                    return result
                result.rows += 1
                if window.from_ms is not None and d.clock < window.from_ms:
                    result.recorded = result.whatif = fold(result.recorded, (d,))  # as recorded: no divergence yet
                    continue
                diverged = self._redecide(result, d, policy, diverged, keep_flips)
            if len(page) < self.page_size:
                return result
            after = page[-1].position

    @staticmethod
    def _redecide(result: MemberWhatIf, d: StoredDecision, policy: Policy, diverged: bool, keep_flips: int) -> bool:
        before = result.whatif
        decision, result.whatif = step(before, d.event, policy)
        if isinstance(decision, Accepted):
            outcome, detail = ACCEPTED, None
        elif isinstance(decision, Rejected):
            outcome, detail = str(decision.reason), decision.detail
        else:
            raise ValueError(f"member {result.member_id}: event {d.event.event_id} is stored twice "
                             f"(again at {d.position})")
        recorded = ACCEPTED if d.kind == ACCEPTED else str(d.reason)
        result.events += 1
        if outcome != recorded:
            result.flip_count += 1
            result.transitions[(recorded, outcome)] += 1
            if len(result.flips) < keep_flips:
                result.flips.append(Flip(d.position, d.event, d.clock, recorded, d.detail, outcome, detail))
            if not diverged and (outcome == ACCEPTED) != (recorded == ACCEPTED):
                diverged = True
                result.recorded = before  # from here on the recorded history is folded on its own
        if diverged:
            result.recorded = fold(result.recorded, (d,))
        else:
            result.recorded = result.whatif
        return diverged

    async def run(self, policy: Policy, members: AsyncIterable[str] | Iterable[str], *,
                  window: Window = ALL_TIME, examples: int = 10,
                  progress: Callable[[int, int], None] | None = None) -> WhatIfReport:
        """The what-if of every member of ``members`` (streamed: at most ``2 * concurrency`` ids wait
        at a time); ``progress(members done, events re-decided)`` after each member."""
        report = WhatIfReport(max_examples=examples)
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=2 * self.concurrency)
        loop = asyncio.get_running_loop()
        began = loop.time()

        async def feed() -> None:
            async for member_id in _aiter(members):
                await queue.put(member_id)
            for _ in range(self.concurrency):
                await queue.put(None)

        async def work() -> None:
            while (member_id := await queue.get()) is not None:
                report.add(await self.member(member_id, policy, window=window))
                if progress is not None:
                    progress(report.members, report.events)

        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(feed())
                for _ in range(self.concurrency):
                    tasks.create_task(work())
        except BaseExceptionGroup as group:  # one failure cancels the rest: report the first
            raise group.exceptions[0] from None
        return report.finish(loop.time() - began)


async def sample(members: AsyncIterable[str] | Iterable[str], n: int, seed: int | None = None) -> list[str]:
    """``n`` ids drawn uniformly from the stream (reservoir sampling: holds ``n`` ids, reads all)."""
    if n < 1:
        raise ValueError("a sample holds at least 1 member")
    rng = random.Random(seed)
    chosen: list[str] = []
    seen = 0
    async for member_id in _aiter(members):
        seen += 1
        if len(chosen) < n:
            chosen.append(member_id)
        else:
            j = rng.randrange(seen)
            if j < n:
                chosen[j] = member_id
    return chosen


async def _aiter(members: AsyncIterable[str] | Iterable[str]) -> AsyncIterator[str]:
    if isinstance(members, AsyncIterable):
        async for m in members:
            yield m
    else:
        for m in members:
            yield m


def _plus(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def _by_count(flips: Counter[tuple[str, str]]) -> list[tuple[tuple[str, str], int]]:
    return sorted(flips.items(), key=lambda item: (-item[1], item[0]))


def _kind(outcome: str) -> str:
    return ACCEPTED if outcome == ACCEPTED else "rejected"


def _reason(outcome: str) -> str | None:
    return None if outcome == ACCEPTED else outcome
