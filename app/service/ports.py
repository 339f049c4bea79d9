"""What the decider and the projector need from the outside world, independent of technology.

Each port has a Cassandra/Kafka/Redis adapter and, for unit tests of the orchestration, an in-memory
one; the contract tests in tests/integration/test_event_store_contract.py run against both stores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.adapters.avro.mapping import Source
from app.domain.events import DownloadEvent, Recorded
from app.domain.state import MemberState

ACCEPTED = "accepted"
REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """One row of a member's durable history, at position (seq, sub).

    (seq, 0) is the accepted event with that seq; (seq, n > 0) the n-th rejection decided after it.
    """

    seq: int
    sub: int
    kind: str
    event: DownloadEvent
    clock: int
    source: Source
    reason: str | None = None
    detail: str | None = None

    @property
    def recorded(self) -> Recorded:
        return Recorded(self.seq, self.clock, self.event)


class AppendConflict(Exception):
    """Another writer already stored a decision at one of these positions (e.g. a zombie lost)."""

    def __init__(self, member_ids: list[str]):
        super().__init__(f"append conflict for {len(member_ids)} member(s)")
        self.member_ids = member_ids


class EventStore(Protocol):
    async def load(self, member_id: str) -> MemberState:
        """Latest readable snapshot plus every decision after it (empty state for a new member)."""

    async def load_many(self, member_ids: list[str]) -> dict[str, MemberState]: ...

    async def append(self, decisions: dict[str, list[StoredDecision]]) -> list[str]:
        """Store each member's decisions atomically and conditionally; returns the members whose
        append lost to another writer (nothing of theirs was written)."""

    async def save_snapshot(self, state: MemberState) -> None: ...

    async def accepted_between(self, member_id: str, after_seq: int, upto_seq: int) -> list[Recorded]:
        """Accepted events with after_seq < seq <= upto_seq, in order (the projector's gap fill)."""

    async def find(self, member_id: str, event_id: str) -> StoredDecision | None:
        """The stored decision of an event (to republish the outcome of a duplicate)."""

    async def member_ids(self) -> list[str]: ...


class ProgressStore(Protocol):
    """The decider's durable input position: the next offset to process, per partition."""

    async def load(self, topic: str) -> dict[int, int]: ...

    async def save(self, topic: str, next_offsets: dict[int, int]) -> None: ...
