"""A replay over in-memory stores: the event store, views and read models per namespace, the
pointer, the replay record, the projector acknowledgements, and a ledger topic held in lists
(partitions of InputMessages) whose reads can be made to fail. The decider is played by `decide`:
it appends the decisions to the event store and the entries to the ledger, as the worker does."""
from __future__ import annotations

import zlib
from collections.abc import Iterator

from app.adapters.avro.mapping import AvroMessageCodec, encode_ledger_entry
from app.adapters.memory.event_store import InMemoryEventStore
from app.adapters.memory.projections import (
    InMemoryNamespacePointer,
    InMemoryProjectorAcks,
    InMemoryReadModels,
    InMemoryReplayRecords,
    InMemoryViewStore,
)
from app.domain.decide import Accepted, step
from app.domain.history import Source, to_stored
from app.domain.state import MemberState
from app.service.ports import InputMessage, LedgerReadError
from app.service.projector import Projector
from app.service.replay import Replay, ReplayStores

TOPIC = "downloads.ledger"
PARTITIONS = 3


class ListLedger:
    """A LedgerSource over lists; ``fail_after`` batches read, every further read fails (a broker
    lost mid-way), until ``fail_after`` is None again."""

    def __init__(self, world: ReplayWorld):
        self.world = world

    def end_offsets(self) -> dict[int, int]:
        return {p: len(messages) for p, messages in self.world.partitions.items()}

    def beginning_offsets(self) -> dict[int, int]:
        return {p: 0 for p in self.world.partitions}

    def offsets_for_time(self, timestamp_ms: int) -> dict[int, int]:
        raise NotImplementedError

    def read(self, start: dict[int, int], end: dict[int, int]) -> Iterator[list[InputMessage]]:
        for p in sorted(end):
            batch = self.world.partitions[p][start.get(p, 0):end[p]]
            if batch:
                if self.world.fail_after is not None:
                    if self.world.fail_after <= 0:
                        raise LedgerReadError(f"{TOPIC}[{p}]: the broker went away")
                    self.world.fail_after -= 1
                yield batch

    def close(self) -> None:
        pass


class ListNamespaces:
    """The NamespaceStore of the in-memory views."""

    name = "memory"

    def __init__(self, world: ReplayWorld):
        self.world = world

    def check(self, ns: str) -> None:
        if not ns or ":" in ns:
            raise ValueError(f"bad namespace {ns!r}")

    async def namespaces(self) -> set[str]:
        return set(self.world.views)

    async def holds_data(self, ns: str) -> bool:
        return bool(self.world.views.get(ns) and self.world.views[ns].states)

    async def members(self, ns: str) -> set[str]:
        return set(self.world.views[ns].states) if ns in self.world.views else set()

    async def create(self, ns: str) -> None:
        self.world.views_for(ns)
        self.world.models_for(ns)

    async def drop(self, ns: str) -> int:
        self.world.models.pop(ns, None)
        return len(self.world.views.pop(ns, InMemoryViewStore()).states)


class ReplayWorld:
    def __init__(self) -> None:
        self.codec = AvroMessageCodec()
        self.event_store = InMemoryEventStore()
        self.pointer = InMemoryNamespacePointer("v1")
        self.records = InMemoryReplayRecords()
        self.acks = InMemoryProjectorAcks()
        self.views: dict[str, InMemoryViewStore] = {}
        self.models: dict[str, InMemoryReadModels] = {}
        self.partitions: dict[int, list[InputMessage]] = {p: [] for p in range(PARTITIONS)}
        self.states: dict[str, MemberState] = {}  # the decider's
        self.fail_after: int | None = None

    def views_for(self, ns: str) -> InMemoryViewStore:
        return self.views.setdefault(ns, InMemoryViewStore())

    def models_for(self, ns: str) -> InMemoryReadModels:
        return self.models.setdefault(ns, InMemoryReadModels())

    async def decide(self, events) -> list[InputMessage]:
        """Decide, store and publish each event; returns the ledger messages appended."""
        appended = []
        for ev in events:
            state = self.states.get(ev.member_id) or MemberState.empty(ev.member_id)
            decision, new = step(state, ev)
            stored = to_stored(decision, ev, new, Source("downloads.events", 0, 0))
            assert await self.event_store.append({ev.member_id: stored}, {ev.member_id: state.position}) == []
            self.states[ev.member_id] = new
            if isinstance(decision, Accepted):
                p = zlib.crc32(ev.member_id.encode()) % PARTITIONS
                for r in decision.recorded:
                    message = InputMessage(TOPIC, p, len(self.partitions[p]), ev.member_id.encode(),
                                           encode_ledger_entry(r, Source("downloads.events", 0, 0)))
                    self.partitions[p].append(message)
                    appended.append(message)
        return appended

    def expected(self) -> dict[str, int]:
        """Each member's seq as the decider has it (members with an accepted event)."""
        return {m: s.seq for m, s in self.states.items() if s.seq > 0}

    def seqs(self, ns: str) -> dict[str, int]:
        return {m: s.seq for m, s in self.views_for(ns).states.items()}

    def model_seqs(self, ns: str) -> dict[str, int]:
        return {m: s.seq for m, s in self.models_for(ns).states.items()}

    def stores(self) -> ReplayStores:
        return ReplayStores(event_store=self.event_store, codec=self.codec, pointer=self.pointer,
                            namespaces=[ListNamespaces(self)], views_for=self.views_for,
                            read_models_for=self.models_for, ledger=lambda: ListLedger(self),
                            records=self.records, acks=self.acks)

    def replay(self, **options) -> Replay:
        options.setdefault("drop_grace_s", 0.0)
        return Replay(self.stores(), topic=TOPIC, **options)

    def live_projector(self, worker_id: str = "w1", **options) -> Projector:
        return Projector(self.event_store, self.codec, self.views_for, self.models_for, self.pointer,
                         acks=self.acks, worker_id=worker_id, **options)
