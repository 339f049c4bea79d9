"""A member's durable history: the rows a decision becomes, and the state they fold back into."""
from __future__ import annotations

from collections.abc import Iterable

from app.adapters.avro.mapping import Source
from app.domain.decide import Accepted, Decision, Rejected, evolve, record_rejection
from app.domain.events import DownloadEvent
from app.domain.state import MemberState
from app.service.ports import ACCEPTED, REJECTED, StoredDecision


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


def fold(state: MemberState, decisions: Iterable[StoredDecision]) -> MemberState:
    """Apply decisions in (seq, sub) order: accepted ones through evolve, rejections through
    record_rejection, exactly as the decider applied them when it decided."""
    for d in decisions:
        if d.kind == ACCEPTED:
            state = evolve(state, d.recorded)
        else:
            state = record_rejection(state, d.event, d.clock)
    return state
