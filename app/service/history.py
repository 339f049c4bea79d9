"""Rebuilding a member's state from its durable history (snapshot + decisions after it)."""
from __future__ import annotations

from collections.abc import Iterable

from app.domain.decide import evolve, record_rejection
from app.domain.state import MemberState
from app.service.ports import ACCEPTED, StoredDecision


def fold(state: MemberState, decisions: Iterable[StoredDecision]) -> MemberState:
    """Apply decisions in (seq, sub) order: accepted ones through evolve, rejections through
    record_rejection, exactly as the decider applied them when it decided."""
    for d in decisions:
        if d.kind == ACCEPTED:
            state = evolve(state, d.recorded)
        else:
            state = record_rejection(state, d.event, d.clock)
    return state
