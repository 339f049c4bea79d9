"""In-memory views, read models, namespace pointer, replay record and projector acknowledgements,
for unit tests of the services.

Fenced by seq like the Redis and Cassandra stores, and held to the same contract tests
(tests/contracts).
"""
from __future__ import annotations

import time
from collections.abc import Callable

from app.domain.state import MemberState
from app.service.ports import ReplayRecord, SwitchRefused

DEFAULT_NAMESPACE = "v1"


class InMemoryViewStore:
    def __init__(self) -> None:
        self.states: dict[str, MemberState] = {}

    async def read_many(self, member_ids: list[str]) -> dict[str, MemberState]:
        return {m: self.states[m] for m in member_ids if m in self.states}

    async def write_many(self, states: list[MemberState]) -> int:
        moved = 0
        for s in states:
            current = self.states.get(s.member_id)
            if current is None or current.seq < s.seq:
                self.states[s.member_id] = s
                moved += 1
        return moved


class InMemoryReadModels(InMemoryViewStore):
    async def read_states(self, member_ids: list[str]) -> dict[str, MemberState]:
        return await self.read_many(member_ids)

    async def write_many(self, states: list[MemberState]) -> int:
        states = [s for s in states if s.seq > 0]
        await super().write_many(states)
        return len(states)


class InMemoryNamespacePointer:
    def __init__(self, ns: str = DEFAULT_NAMESPACE) -> None:
        self.ns = ns

    async def active(self) -> str:
        return self.ns

    async def switch(self, expected: str, new: str) -> None:
        if self.ns != expected:
            raise SwitchRefused(expected, self.ns)
        self.ns = new


class InMemoryMemberClocks:
    def __init__(self) -> None:
        self.clocks: dict[str, int] = {}

    async def advance(self, clocks: dict[str, int]) -> None:
        for member_id, clock in clocks.items():
            self.clocks[member_id] = max(self.clocks.get(member_id, clock), clock)

    async def read_many(self, member_ids: list[str]) -> dict[str, int]:
        return {m: self.clocks[m] for m in member_ids if m in self.clocks}


class InMemoryReplayRecords:
    def __init__(self) -> None:
        self.record: ReplayRecord | None = None

    async def load(self) -> ReplayRecord | None:
        return self.record

    async def save(self, record: ReplayRecord) -> None:
        self.record = record

    async def clear(self) -> None:
        self.record = None


class InMemoryProjectorAcks:
    """Acknowledgements expiring on ``clock`` (monotonic seconds by default)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.acks: dict[str, tuple[str, float]] = {}  # worker id -> (namespace, expiry)

    async def acknowledge(self, worker_id: str, ns: str, ttl_s: float) -> None:
        self.acks[worker_id] = (ns, self.clock() + ttl_s)

    async def live(self) -> dict[str, str]:
        now = self.clock()
        self.acks = {w: (ns, expiry) for w, (ns, expiry) in self.acks.items() if expiry > now}
        return {w: ns for w, (ns, _) in self.acks.items()}
