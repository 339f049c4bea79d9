"""A member's durable history: the rows a decision becomes, and the state they fold back into.

Pure: the event store keeps these rows, the decider makes them, every store folds them with `fold`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.domain.decide import Accepted, Decision, Rejected, evolve, record_rejection
from app.domain.events import DownloadEvent, Recorded
from app.domain.state import MemberState

ACCEPTED = "accepted"
REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input message came from: its Kafka topic, partition and offset."""

    topic: str
    partition: int
    offset: int


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

    @property
    def position(self) -> tuple[int, int]:
        return self.seq, self.sub


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """An accepted event as the ledger topic carries it."""

    recorded: Recorded
    source: Source


@dataclass(frozen=True, slots=True)
class RejectionEntry:
    """A rejected event as the rejections topic carries it: the event, why, and the member clock."""

    event: DownloadEvent
    reason: str
    detail: str
    clock: int
    source: Source


def to_stored(decision: Decision, event: DownloadEvent, state_after: MemberState, source: Source) -> list[StoredDecision]:
    """The rows the event store keeps for one decision (none for a duplicate); ``state_after`` is the
    member state once the decision was applied, which gives a rejection its position (seq, n)."""
    match decision:
        case Accepted(recorded):
            return [StoredDecision(r.seq, 0, ACCEPTED, r.event, r.clock, source) for r in recorded]
        case Rejected(reason, detail, clock):
            return [StoredDecision(state_after.seq, state_after.rejections_since_seq, REJECTED, event, clock,
                                   source, str(reason), detail)]
    return []


def next_position(head: tuple[int, int], kind: str) -> tuple[int, int]:
    """Where a decision of ``kind`` goes after ``head``: an accepted one opens the next seq, a
    rejection is the next sub of the current seq."""
    seq, sub = head
    return (seq + 1, 0) if kind == ACCEPTED else (seq, sub + 1)


def check_follows(member_id: str, head: tuple[int, int], decisions: Iterable[StoredDecision]) -> tuple[int, int]:
    """Raises ValueError unless ``decisions`` continue ``head`` without a gap; returns the head after them."""
    for d in decisions:
        expected = next_position(head, d.kind)
        if d.position != expected:
            raise ValueError(f"member {member_id}: a {d.kind} decision at {d.position} does not follow "
                             f"{head} (expected {expected})")
        head = d.position
    return head


def fold(state: MemberState, decisions: Iterable[StoredDecision]) -> MemberState:
    """Apply decisions in (seq, sub) order: accepted ones through evolve, rejections through
    record_rejection, exactly as the decider applied them when it decided."""
    for d in decisions:
        if d.kind == ACCEPTED:
            state = evolve(state, d.recorded)
        else:
            state = record_rejection(state, d.event, d.clock)
    return state
