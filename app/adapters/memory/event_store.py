"""In-memory event store and progress store, for unit tests of the orchestration code.

They pass the same contract tests as the Cassandra ones (tests/contracts).
"""
from __future__ import annotations

from app.domain.events import Recorded
from app.domain.history import ACCEPTED, StoredDecision, check_follows, fold
from app.domain.state import MemberState


class InMemoryEventStore:
    def __init__(self):
        self.rows: dict[str, dict[tuple[int, int], StoredDecision]] = {}
        self.snapshots: dict[str, list[MemberState]] = {}

    async def load(self, member_id: str) -> MemberState:
        snapshots = self.snapshots.get(member_id)
        state = snapshots[-1] if snapshots else MemberState.empty(member_id)
        position = (state.seq, state.rejections_since_seq)
        history = self.rows.get(member_id, {})
        return fold(state, (history[p] for p in sorted(history) if p > position))

    async def load_many(self, member_ids: list[str]) -> dict[str, MemberState]:
        return {m: await self.load(m) for m in member_ids}

    async def append(self, decisions: dict[str, list[StoredDecision]],
                     heads: dict[str, tuple[int, int]]) -> list[str]:
        conflicts = []
        for member_id, ds in decisions.items():
            if not ds:
                continue
            check_follows(member_id, heads[member_id], ds)
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
        self.snapshots.setdefault(state.member_id, []).append(state)

    async def accepted_between(self, member_id: str, after_seq: int, upto_seq: int) -> list[Recorded]:
        history = self.rows.get(member_id, {})
        return [history[p].recorded for p in sorted(history)
                if history[p].kind == ACCEPTED and after_seq < p[0] <= upto_seq]

    async def find(self, member_id: str, event_id: str) -> StoredDecision | None:
        return next((d for d in self.rows.get(member_id, {}).values() if d.event.event_id == event_id), None)

    async def member_ids(self) -> list[str]:
        return list(self.rows)


class InMemoryProgressStore:
    def __init__(self):
        self.offsets: dict[str, dict[int, int]] = {}

    async def load(self, topic: str) -> dict[int, int]:
        return dict(self.offsets.get(topic, {}))

    async def save(self, topic: str, next_offsets: dict[int, int]) -> None:
        self.offsets.setdefault(topic, {}).update(next_offsets)
