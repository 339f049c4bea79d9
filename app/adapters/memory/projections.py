"""In-memory views, read models and namespace pointer, for unit tests of the services.

Fenced by seq like the Redis and Cassandra stores, and held to the same contract tests
(tests/contracts).
"""
from __future__ import annotations

from app.domain.state import MemberState
from app.service.ports import SwitchRefused

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
