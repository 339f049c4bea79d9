"""In-memory event store and progress store, for unit tests of the orchestration code.

They pass the same contract tests as the Cassandra ones (tests/contracts).
"""
from __future__ import annotations

from collections.abc import AsyncIterator

from app.domain.events import Recorded
from app.domain.history import ACCEPTED, StoredDecision, check_follows, fold
from app.domain.state import MemberState
from app.service.ports import SNAPSHOTS_KEPT, LoadedState


class InMemoryEventStore:
    def __init__(self):
        self.rows: dict[str, dict[tuple[int, int], StoredDecision]] = {}
        self.snapshots: dict[str, list[MemberState]] = {}  # per member, oldest first
        # The event-id lookup, like the Cassandra one: written before the conditional append, so a
        # lost append leaves entries behind, and readers check the row an entry points at.
        self.lookup: dict[str, dict[str, set[tuple[int, int]]]] = {}
        self.pages_read = 0  # HistoryReader pages served (tests check a what-if streams its reads)

    async def load(self, member_id: str) -> MemberState:
        return self._load(member_id).state

    async def load_many(self, member_ids: list[str]) -> dict[str, LoadedState]:
        return {m: self._load(m) for m in member_ids}

    def _load(self, member_id: str) -> LoadedState:
        snapshots = self.snapshots.get(member_id)
        state = snapshots[-1] if snapshots else MemberState.empty(member_id)
        history = self.rows.get(member_id, {})
        after = [history[p] for p in sorted(history) if p > state.position]
        return LoadedState(fold(state, after), len(after))

    async def append(self, decisions: dict[str, list[StoredDecision]],
                     heads: dict[str, tuple[int, int]]) -> list[str]:
        conflicts = []
        for member_id, ds in decisions.items():
            if not ds:
                continue
            check_follows(member_id, heads[member_id], ds)
            lookup = self.lookup.setdefault(member_id, {})
            for d in ds:
                lookup.setdefault(d.event.event_id, set()).add(d.position)
            history = self.rows.setdefault(member_id, {})
            if self.head(member_id) != heads[member_id]:
                conflicts.append(member_id)
                continue
            history.update({(d.seq, d.sub): d for d in ds})
        return conflicts

    def head(self, member_id: str) -> tuple[int, int]:
        """The position of the member's last stored decision, (0, 0) for none."""
        return max(self.rows.get(member_id) or {(0, 0): None})

    async def save_snapshot(self, state: MemberState) -> None:
        """Like the Cassandra store: one snapshot per position, then those older than the newest
        SNAPSHOTS_KEPT go."""
        by_position = {s.position: s for s in self.snapshots.get(state.member_id, [])}
        by_position[state.position] = state
        newest = sorted(by_position)[-SNAPSHOTS_KEPT:]
        self.snapshots[state.member_id] = [by_position[p] for p in newest]

    async def snapshot_positions(self, member_id: str, limit: int = 100) -> list[tuple[int, int]]:
        """The positions of the member's snapshots, newest first."""
        return [s.position for s in reversed(self.snapshots.get(member_id, []))][:limit]

    async def accepted_between(self, member_id: str, after_seq: int, upto_seq: int) -> list[Recorded]:
        history = self.rows.get(member_id, {})
        return [history[p].recorded for p in sorted(history)
                if history[p].kind == ACCEPTED and after_seq < p[0] <= upto_seq]

    async def find(self, member_id: str, event_id: str) -> StoredDecision | None:
        found = await self.find_many(member_id, [event_id])
        if event_id in found:
            return found[event_id]
        history = self.rows.get(member_id, {})
        return next((history[p] for p in sorted(history) if history[p].event.event_id == event_id), None)

    async def find_many(self, member_id: str, event_ids: list[str]) -> dict[str, StoredDecision]:
        lookup, history = self.lookup.get(member_id, {}), self.rows.get(member_id, {})
        found = {}
        for event_id in event_ids:
            for p in sorted(lookup.get(event_id, ())):
                if p in history and history[p].event.event_id == event_id:
                    found[event_id] = history[p]
                    break
        return found

    async def member_ids(self) -> list[str]:
        return list(self.rows)

    # --- HistoryReader ----------------------------------------------------------------------

    async def page(self, member_id: str, after: tuple[int, int] | None, limit: int) -> list[StoredDecision]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        history = self.rows.get(member_id, {})
        positions = sorted(p for p in history if after is None or p > after)[:limit]
        self.pages_read += 1
        return [history[p] for p in positions]

    async def stream_member_ids(self) -> AsyncIterator[str]:
        for member_id in list(self.rows):
            if self.rows[member_id]:
                yield member_id


class InMemoryProgressStore:
    def __init__(self):
        self.offsets: dict[str, dict[int, int]] = {}

    async def load(self, topic: str) -> dict[int, int]:
        return dict(self.offsets.get(topic, {}))

    async def save(self, topic: str, next_offsets: dict[int, int]) -> None:
        self.offsets.setdefault(topic, {}).update(next_offsets)
