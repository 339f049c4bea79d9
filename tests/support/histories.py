"""Histories decided by the pure domain, shaped as the decider stores and publishes them."""
from __future__ import annotations

from app.domain.decide import Accepted, step
from app.domain.history import Source, to_stored
from app.domain.state import MemberState


def decided(events, member: str = "m1", topic: str = "downloads.events", partition: int = 0):
    """Step events through the decider; returns (ledger entries, stored decisions, final state).
    The i-th event's source offset is i."""
    state = MemberState.empty(member)
    recorded, decisions = [], []
    for i, ev in enumerate(events):
        decision, state = step(state, ev)
        if isinstance(decision, Accepted):
            recorded += decision.recorded
        decisions += to_stored(decision, ev, state, Source(topic, partition, i))
    return recorded, decisions, state
