"""The ports the application services own: what they need from the outside world, in their terms.

Adapters (app/adapters/*) implement them for a technology; app/bootstrap.py picks the
implementations. Every store port has an in-memory implementation (app/adapters/memory) that
passes the same contract tests as the real one (tests/contracts).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from app.domain.events import DownloadEvent, Recorded
from app.domain.history import LedgerEntry, RejectionEntry, Source, StoredDecision
from app.domain.state import MemberState

# --- messages in -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputMessage:
    """A consumed message as the services see it: bytes plus where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = field(default=())
    timestamp: int | None = None  # the message's timestamp (ms), when the broker gave one


class DecodeError(Exception):
    """Bytes that are not a message of a known schema.

    code: bad_marker | unknown_fingerprint | truncated | schema_mismatch | out_of_schema
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class MessageCodec(Protocol):
    """Bytes of the input and ledger topics to domain objects (raises DecodeError)."""

    def decode_event(self, data: bytes) -> DownloadEvent: ...

    def decode_ledger_entry(self, data: bytes) -> LedgerEntry: ...

    def decode_rejection(self, data: bytes) -> RejectionEntry: ...


# --- the decider's outputs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input message that cannot be decided, with the reason (kind: undecodable | malformed), or
    whose decision's output cannot be published (kind: unpublishable; see Outbox)."""

    message: InputMessage
    kind: str
    code: str
    detail: str


@dataclass
class PublishReport:
    """What an Outbox had to do besides publishing each output as it is (all zero normally)."""

    diverted: Counter[str] = field(default_factory=Counter)  # outputs published as dead letters instead, by code
    truncated: int = 0  # dead letters whose value (or key, or passed-on headers) was cut to fit
    dropped: int = 0  # outputs that could not be published in any form (each one is logged)


class Outbox(Protocol):
    """Where decisions go once they are durable: accepted ones to the ledger, rejections to the
    rejections topic, dead letters to the DLQ. ``publish`` returns when every output is
    acknowledged, or raises (the caller retries the batch); an output that can never be published
    (too large, say) becomes a dead letter of its input rather than an error, so one record never
    stops a partition. Such a decision is nevertheless durable in the event store: the state, the
    projector's gap fill (on the member's next entry) and a replay still see it."""

    async def publish(self, decisions: list[tuple[str, StoredDecision]], dead_letters: list[DeadLetter],
                      inputs: Mapping[Source, InputMessage] | None = None) -> PublishReport:
        """``decisions``: (member_id, decision) in the order to publish; ``inputs``: the batch's input
        messages by source, for the dead letter of an output that cannot be published."""


# --- the event store and the decider's progress ------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedState:
    """A member's state with the number of its rows (decisions, accepted and rejected) after its
    latest snapshot: what a load folded onto the snapshot, every row when there is none. The
    decider counts on from there and snapshots the member once it reaches ``snapshot_every``."""

    state: MemberState
    rows_since_snapshot: int


# How many snapshots a member keeps: a load tries its newest ones in turn, skipping any the code can
# no longer read, and saving a snapshot deletes the ones older than these.
SNAPSHOTS_KEPT = 3


class EventStore(Protocol):
    async def load(self, member_id: str) -> MemberState:
        """Latest readable snapshot plus every decision after it (empty state for a new member)."""

    async def load_many(self, member_ids: list[str]) -> dict[str, LoadedState]:
        """Each member as `load` gives it, with how many rows the load folded after its snapshot."""

    async def append(self, decisions: dict[str, list[StoredDecision]],
                     heads: dict[str, tuple[int, int]]) -> list[str]:
        """Store each member's decisions atomically, on condition that the member's head (the
        position of its last stored decision, (0, 0) for none) is still ``heads[member]``: the
        position of the state the decisions were decided from (``MemberState.position``). Returns
        the members whose append lost to another writer (nothing of theirs was written).

        The condition is on the head, not on each position being free: a writer holding a stale
        state would otherwise store a rejection in a free past slot, (1, 1) below (2, 0), which
        `load` from a later snapshot never sees. Raises ValueError when a member's decisions do not
        continue its expected head without a gap (`history.check_follows`)."""

    async def save_snapshot(self, state: MemberState) -> None:
        """Store the state as the member's snapshot at its position (seq, rejections_since_seq), then
        delete the member's snapshots older than its newest SNAPSHOTS_KEPT (the new one included
        when it is among them). Only a state that is the fold of the member's stored rows up to its
        position may be saved: the decider saves a state once its append succeeded."""

    async def accepted_between(self, member_id: str, after_seq: int, upto_seq: int) -> list[Recorded]:
        """Accepted events with after_seq < seq <= upto_seq, in order (the projector's gap fill)."""

    async def find(self, member_id: str, event_id: str) -> StoredDecision | None:
        """The stored decision of an event (to republish the outcome of a duplicate): by the event-id
        lookup, else (a decision stored before the lookup existed) by reading the member's history."""

    async def find_many(self, member_id: str, event_ids: list[str]) -> dict[str, StoredDecision]:
        """The stored decisions of those of ``event_ids`` the event-id lookup knows, by event id. The
        lookup holds every decision appended since migration 0006, and a member's older ones from
        the first append after it, so a miss means "not decided" (a decision needs an append)."""

    async def member_ids(self) -> list[str]: ...


class HistoryUnavailable(RuntimeError):
    """The event store cannot be read now (unreachable, timing out): worth retrying later."""


class HistoryReader(Protocol):
    """A member's durable history, read only (the history endpoint, the what-if): nothing reached
    through this port can write."""

    async def page(self, member_id: str, after: tuple[int, int] | None, limit: int) -> list[StoredDecision]:
        """Up to ``limit`` of the member's decisions after position ``after`` (None: from its first), in
        decision order, (seq, sub); an empty list past the end and for a member with no decision."""

    def stream_member_ids(self) -> AsyncIterator[str]:
        """Every member with a stored decision, once each, read page by page (never all at once)."""


class ProgressStore(Protocol):
    """A consumer's durable input position: the next offset to process, per partition."""

    async def load(self, topic: str) -> dict[int, int]: ...

    async def save(self, topic: str, next_offsets: dict[int, int]) -> None: ...


# --- projections -------------------------------------------------------------------------------


class ViewStore(Protocol):
    """The member views of one projection namespace (Redis)."""

    async def read_many(self, member_ids: list[str]) -> dict[str, MemberState]: ...

    async def write_many(self, states: list[MemberState]) -> int:
        """Fenced by seq (a write at or below the stored seq changes nothing); returns how many moved."""


class ReadModels(Protocol):
    """The member summaries of one projection namespace (Cassandra), fenced by seq like the views."""

    async def read_states(self, member_ids: list[str]) -> dict[str, MemberState]: ...

    async def write_many(self, states: list[MemberState]) -> int: ...


class MemberClocks(Protocol):
    """Each member's clock counting every decided event, rejections included (the views are folded
    from the ledger, which carries accepted events only). It only moves forward, so it needs no
    projection namespace and no fence: applying a rejection twice, or late, changes nothing."""

    async def advance(self, clocks: dict[str, int]) -> None:
        """Each member's clock becomes max(its clock, the one given)."""

    async def read_many(self, member_ids: list[str]) -> dict[str, int]: ...


class SwitchRefused(RuntimeError):
    def __init__(self, expected: str, actual: str):
        super().__init__(f"the active namespace is {actual}, not {expected}: another switch happened meanwhile")
        self.expected = expected
        self.actual = actual


class NamespacePointer(Protocol):
    """Which projection namespace readers follow."""

    async def active(self) -> str: ...

    async def switch(self, expected: str, new: str) -> None:
        """Atomically point readers at ``new`` if ``expected`` is still active; else SwitchRefused."""


# The phases of a replay that switched readers, as its ReplayRecord keeps them: the catch-up is
# still to be done (written just before the switch: whether the switch happened is the pointer's
# to say), or only the old namespace is still to be dropped (written after the catch-up when the
# replay drops it).
CATCH_UP = "catch-up"
DROP_OLD = "drop-old"


@dataclass(frozen=True, slots=True)
class ReplayRecord:
    """What a re-run needs to finish a replay that stopped after (or during) its switch."""

    old_ns: str
    new_ns: str
    topic: str
    end: dict[int, int]  # the ledger offsets the rebuild read up to: the catch-up starts there
    phase: str  # CATCH_UP | DROP_OLD


class ReplayRecords(Protocol):
    """The unfinished replay, if any, kept next to the namespace pointer (one per pointer)."""

    async def load(self) -> ReplayRecord | None: ...

    async def save(self, record: ReplayRecord) -> None: ...

    async def clear(self) -> None: ...


class ProjectorAcks(Protocol):
    """Which namespace each live projector writes. A projector acknowledges the namespace of its
    batches with a time to live, and again before that runs out (a heartbeat); a projector whose
    last acknowledgement has expired is not live (stopped, killed, or cut off from Redis)."""

    async def acknowledge(self, worker_id: str, ns: str, ttl_s: float) -> None: ...

    async def live(self) -> dict[str, str]:
        """The namespace of each live projector, by worker id (expired acknowledgements are left out)."""


class NamespaceStore(Protocol):
    """A technology's projection namespaces as a whole (the replay creates, fills and drops them)."""

    name: str

    def check(self, ns: str) -> None:
        """Raises ValueError when ``ns`` is not a usable name here."""

    async def namespaces(self) -> set[str]:
        """Every namespace that exists here (holds data or tables)."""

    async def holds_data(self, ns: str) -> bool: ...

    async def members(self, ns: str) -> set[str]: ...

    async def create(self, ns: str) -> None: ...

    async def drop(self, ns: str) -> int:
        """Delete everything of the namespace; returns how many keys or tables went."""


# --- the ledger, read as a range ---------------------------------------------------------------


class LedgerReadError(RuntimeError):
    """The ledger cannot be read (no such topic, broker unreachable, an offset no longer exists)."""


class LedgerSource(Protocol):
    """A bounded range of the ledger topic (raises LedgerReadError)."""

    def end_offsets(self) -> dict[int, int]: ...

    def beginning_offsets(self) -> dict[int, int]: ...

    def offsets_for_time(self, timestamp_ms: int) -> dict[int, int]: ...

    def read(self, start: dict[int, int], end: dict[int, int]) -> Iterator[list[InputMessage]]: ...

    def close(self) -> None: ...
