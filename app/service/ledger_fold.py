"""Each member's state folded in memory from ledger entries: the replay's fast path.

Pure: no I/O; an entry at or below a member's seq is a republished duplicate, an entry beyond
seq + 1 waits for the gap to close (or for `fill` from the event store)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from app.domain.decide import evolve
from app.domain.events import Recorded
from app.domain.state import MemberState, ProcessedIds
from app.service.projector import LedgerGapError

_NO_IDS = ProcessedIds()
_LEAN_AT = 512  # processed ids a folded state may carry before they are dropped (views do not use them)


@dataclass(slots=True)
class _MemberFold:
    state: MemberState
    pending: dict[int, Recorded] | None = None  # entries beyond seq + 1, waiting for the gap to close


class LedgerFold:
    """Each member's state folded from ledger entries in any order, duplicates skipped.

    Pure: no I/O. Entries of one member normally come in seq order (one partition); republished
    entries repeat seqs already applied (duplicates); an entry beyond seq + 1 is held until the
    missing seqs arrive or `fill` supplies them from the event store."""

    def __init__(self) -> None:
        self.members: dict[str, _MemberFold] = {}
        self.applied = 0
        self.duplicates = 0

    def add(self, recorded: Recorded) -> None:
        member_id = recorded.event.member_id
        member = self.members.get(member_id)
        if member is None:
            member = self.members[member_id] = _MemberFold(MemberState.empty(member_id))
        seq = recorded.seq
        if seq <= member.state.seq or (member.pending is not None and seq in member.pending):
            self.duplicates += 1
        elif seq == member.state.seq + 1:
            self._apply(member, recorded)
            if member.pending:
                self._drain(member)
        else:
            if member.pending is None:
                member.pending = {}
            member.pending[seq] = recorded

    def gaps(self) -> dict[str, tuple[int, int]]:
        """Per member still waiting: the first missing range (after_seq, upto_seq]."""
        return {m: (f.state.seq, min(f.pending) - 1) for m, f in self.members.items() if f.pending}

    def fill(self, member_id: str, recorded: list[Recorded]) -> int:
        """Apply the accepted events of the member's first gap (from the event store); returns how many."""
        member = self.members[member_id]
        after, upto = member.state.seq, min(member.pending) - 1
        got = [r.seq for r in recorded]
        if got != list(range(after + 1, upto + 1)):
            raise LedgerGapError(member_id, after, upto, got)
        for r in recorded:
            member.state = lean(evolve(member.state, r))
        self._drain(member)
        return len(recorded)

    def states(self) -> list[MemberState]:
        return [lean(f.state, 0) for f in self.members.values() if f.state.seq > 0]

    def _apply(self, member: _MemberFold, recorded: Recorded) -> None:
        member.state = lean(evolve(member.state, recorded))
        self.applied += 1

    def _drain(self, member: _MemberFold) -> None:
        pending = member.pending
        if not pending:
            return
        while pending and member.state.seq + 1 in pending:
            self._apply(member, pending.pop(member.state.seq + 1))
        # entries at or below the seq reached are duplicates of what was applied
        for seq in [s for s in pending if s <= member.state.seq]:
            del pending[seq]
            self.duplicates += 1
        if not pending:
            member.pending = None


def lean(state: MemberState, keep: int = _LEAN_AT) -> MemberState:
    """The state without its processed event ids once it carries more than ``keep`` (views do not use them)."""
    return replace(state, processed=_NO_IDS) if len(state.processed) > keep else state
