"""Each member's state folded in memory from ledger entries: the replay's fast path.

Pure: no I/O; an entry at or below a member's seq is a republished duplicate, an entry beyond
seq + 1 waits for the gap to close (or for `fill` from the event store)."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from app.domain.decide import evolve
from app.domain.events import Recorded
from app.domain.history import LedgerEntry
from app.domain.state import MemberState
from app.domain.views import lean
from app.service.ports import DecodeError, InputMessage, MessageCodec

log = logging.getLogger(__name__)

_LEAN_AT = 512  # processed ids a folded state may carry before they are dropped (views do not use them)


class LedgerGapError(RuntimeError):
    """The event store does not hold the accepted events a ledger gap needs (never expected: the
    decider appends to the store before it publishes to the ledger)."""

    def __init__(self, member_id: str, after_seq: int, upto_seq: int, got: list[int]):
        super().__init__(f"member {member_id}: gap ({after_seq}, {upto_seq}] cannot be filled from the "
                         f"event store (it returned seqs {got})")
        self.member_id = member_id
        self.after_seq = after_seq
        self.upto_seq = upto_seq


def check_gap_fill(member_id: str, after_seq: int, upto_seq: int, fill: list[Recorded]) -> None:
    """The event store's answer for the gap (after_seq, upto_seq] must be exactly those seqs."""
    got = [r.seq for r in fill]
    if got != list(range(after_seq + 1, upto_seq + 1)):
        raise LedgerGapError(member_id, after_seq, upto_seq, got)


def decode_entries(messages: Iterable[InputMessage], codec: MessageCodec) -> tuple[list[tuple[LedgerEntry, int]], int]:
    """(entry, partition) of each decodable ledger message, and how many were not decodable (each
    logged and skipped: a ledger entry nobody can read is the writer's bug, never a reason to stop)."""
    entries = []
    undecodable = 0
    for message in messages:
        try:
            if message.value is None:
                raise DecodeError("truncated", "no value (tombstone)")
            entries.append((codec.decode_ledger_entry(message.value), message.partition))
        except DecodeError as exc:
            undecodable += 1
            log.warning("undecodable ledger message at %s[%d]@%d skipped: %s",
                        message.topic, message.partition, message.offset, exc)
    return entries, undecodable


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
        assert member.pending, f"member {member_id} has no gap to fill"
        after, upto = member.state.seq, min(member.pending) - 1
        check_gap_fill(member_id, after, upto, recorded)
        for r in recorded:
            member.state = lean(evolve(member.state, r), _LEAN_AT)
        self._drain(member)
        return len(recorded)

    def states(self) -> list[MemberState]:
        return [lean(f.state) for f in self.members.values() if f.state.seq > 0]

    def _apply(self, member: _MemberFold, recorded: Recorded) -> None:
        member.state = lean(evolve(member.state, recorded), _LEAN_AT)
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

