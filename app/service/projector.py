"""The projector: applies micro-batches of ledger entries to the Redis views and the Cassandra read models.

One call of `Projector.process` handles one micro-batch of ``downloads.ledger`` messages:
1. decode each message (an undecodable one is logged and counted, never fatal);
2. read the active projection namespace once; when it changed since the last batch, drop the cache
   (the states cached are those of the old namespace), and acknowledge the namespace (with
   ProjectorAcks, the live projector): from now on this projector writes no other one;
3. group the entries by member and take each member's current view state from the bounded LRU
   cache, else from the stores (Redis view and Cassandra summary, read concurrently; the one with
   the higher seq wins and the other is repaired in this batch), else `MemberState.empty`;
4. apply the member's entries in seq order: an entry at or below the applied seq is a duplicate
   (no-op); an entry beyond applied seq + 1 first fills the gap from the event store
   (`accepted_between`); applying is `app.domain.decide.evolve`. Members without a gap are
   folded at once, one after the other; those with one are filled concurrently;
5. write each member that moved once per batch, to Redis (fenced Lua write) and to Cassandra
   (``USING TIMESTAMP seq``), concurrently. If a write fails, the batch's members leave the cache and
   the error propagates: the caller must not commit the offsets, and the redelivered batch is
   applied again from the stores (the fences make the part that was written a no-op);
6. save the durable input position (next offset per partition) when a ProgressStore is given (the
   live projector): on assignment the worker seeks back to it when Kafka's committed offset is
   ahead, so an offset acknowledged for a batch that was never applied (a stop during a retry)
   cannot skip entries.

Each store is fenced on its own, and a cache miss reads both, so a crash between the Redis and the
Cassandra write is repaired by the redelivery even when every redelivered entry is a duplicate.

Between batches, `Projector.heartbeat` (the worker calls it every quarter of ``ack_ttl_s``) renews
the acknowledgement: while a batch is in flight, with that batch's namespace; else it first follows
the pointer (an idle projector acknowledges a switch without waiting for an entry). A replay with
``--drop-old`` drops the old namespace once no live projector acknowledges it.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from app.domain.decide import evolve
from app.domain.events import Recorded
from app.domain.history import LedgerEntry
from app.domain.state import MemberState
from app.domain.views import lean
from app.service.ledger_fold import check_gap_fill, decode_entries
from app.service.member_cache import MemberCache, member_state_cache
from app.service.ports import (
    BatchTrace,
    EventStore,
    InputMessage,
    MessageCodec,
    NamespacePointer,
    ProgressStore,
    ProjectorAcks,
    ReadModels,
    Tracer,
    ViewStore,
)
from app.service.progress import save_progress
from app.service.tracing import NO_TRACER

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ProjectionReport:
    """Counts of one batch, for metrics and logs."""

    messages: int = 0
    undecodable: int = 0
    applied: int = 0  # ledger entries of the batch applied
    duplicates: int = 0  # ledger entries at or below the applied seq (no-ops)
    gaps_filled: int = 0  # gaps filled from the event store
    gap_entries: int = 0  # accepted events read from the event store to fill them
    members_written: int = 0  # members written to Redis and/or Cassandra
    redis_refused: int = 0  # Redis writes refused by the fence (another writer was ahead)
    namespace: str = ""
    cache_dropped: bool = False  # the active namespace changed: the cache was dropped
    cache_hits: int = 0  # members of the batch whose state came from the cache
    loaded: int = 0  # members of the batch read from the stores (Redis view and Cassandra summary)


# A member's state after its entries of a batch: (state, applied, duplicates, gaps filled, entries
# read to fill them).
_Advanced = tuple[MemberState, int, int, int, int]


def _fold_without_gap(state: MemberState, entries: list[Recorded]) -> _Advanced | None:
    """The member's entries applied in seq order, or None when one of them is past ``seq + 1``
    (its gap must be filled from the event store first: `Projector._advance`)."""
    applied = duplicates = 0
    for recorded in sorted(entries, key=lambda r: r.seq):
        if recorded.seq <= state.seq:
            duplicates += 1
            continue
        if recorded.seq > state.seq + 1:
            return None
        state = evolve(state, recorded)
        applied += 1
    return lean(state), applied, duplicates, 0, 0


@dataclass(slots=True)
class _Member:
    """A member during a batch: its state and what each store is known to hold."""

    state: MemberState
    redis_seq: int
    cassandra: MemberState | None  # what the Cassandra read models hold (None: unknown / nothing)


class Projector:
    def __init__(
        self,
        event_store: EventStore,
        codec: MessageCodec,
        views_for: Callable[[str], ViewStore],
        read_models_for: Callable[[str], ReadModels],
        pointer: NamespacePointer,
        cache_size: int = 50_000,
        progress: ProgressStore | None = None,
        cache_bytes: int | None = None,
        acks: ProjectorAcks | None = None,
        worker_id: str = "",
        ack_ttl_s: float = 10.0,
        tracer: Tracer = NO_TRACER,
    ):
        """``views_for(ns)`` / ``read_models_for(ns)`` build the stores of a namespace (called once per
        namespace); the ``pointer`` is read once per batch. The cache of (lean) member states keeps
        at most ``cache_size`` states and, with ``cache_bytes``, at most that many estimated bytes.
        With ``acks`` (the live projector), the namespace it writes is acknowledged as ``worker_id``
        for ``ack_ttl_s`` at a time."""
        self.event_store = event_store
        self.codec = codec
        self._views_for = views_for
        self._read_models_for = read_models_for
        self._pointer = pointer
        self.progress = progress
        self.tracer = tracer
        self._stores: dict[str, tuple[ViewStore, ReadModels]] = {}
        self._cache: MemberCache[MemberState] = member_state_cache(cache_size, cache_bytes)
        self._ns: str | None = None
        self.acks = acks
        self.worker_id = worker_id
        self.ack_ttl_s = ack_ttl_s
        self._in_flight = 0  # batches being processed (one at a time in the worker)

    @property
    def namespace(self) -> str | None:
        """The namespace of the last batch."""
        return self._ns

    @property
    def cached_members(self) -> int:
        return len(self._cache)

    def drop_partitions(self, partitions: Iterable[int]) -> int:
        """Forget the members of revoked ledger partitions; returns how many cache entries were dropped."""
        return self._cache.drop_partitions(set(partitions))

    # --- one batch ----------------------------------------------------------------------

    async def process(self, messages: list[InputMessage]) -> ProjectionReport:
        self._in_flight += 1
        try:
            with self.tracer.batch("projector", messages) as trace:
                return await self._process(messages, trace)
        finally:
            self._in_flight -= 1

    async def heartbeat(self) -> str | None:
        """Renew this projector's acknowledgement; returns the namespace acknowledged (None: no
        acks, or nothing to acknowledge yet). Between batches it follows the pointer first."""
        if self.acks is None:
            return None
        if not self._in_flight:
            ns = await self._pointer.active()
            if not self._in_flight:  # a batch that began meanwhile read the pointer on its own
                self._follow(ns)
        if self._ns is None:
            return None
        await self.acks.acknowledge(self.worker_id, self._ns, self.ack_ttl_s)
        return self._ns

    def _follow(self, ns: str) -> bool:
        """Make ``ns`` the namespace of the next writes; True when it changed (the cache is dropped)."""
        if ns == self._ns:
            return False
        if self._ns is not None:
            log.info("active namespace changed from %s to %s: dropping %d cached members",
                     self._ns, ns, len(self._cache))
        self._cache.clear()
        self._ns = ns
        return True

    async def _process(self, messages: list[InputMessage], trace: BatchTrace) -> ProjectionReport:
        result = ProjectionReport(messages=len(messages))
        with trace.stage("decode"):
            entries, result.undecodable = decode_entries(messages, self.codec)

        ns = await self._pointer.active()
        previous = self._ns
        if self._follow(ns):
            result.cache_dropped = previous is not None
            if self.acks is not None:
                await self.acks.acknowledge(self.worker_id, ns, self.ack_ttl_s)
        result.namespace = ns
        if not entries:
            await self._save_progress(messages)
            return result
        views, read_models = self._stores_of(ns)

        by_member: dict[str, list[LedgerEntry]] = {}
        partition_of: dict[str, int] = {}
        for entry, partition in entries:
            member_id = entry.recorded.event.member_id
            by_member.setdefault(member_id, []).append(entry)
            partition_of[member_id] = partition

        with trace.stage("load"):
            members = await self._load(list(by_member), views, read_models, result)
        # Nothing is written before every member advanced: on a LedgerGapError the cache still
        # holds exactly what the stores hold. A member whose entries follow its state without a gap
        # (nearly all) is folded right here; only those with a gap wait for the event store,
        # concurrently.
        outcomes: dict[str, _Advanced] = {}
        gapped = []
        with trace.stage("apply"):
            for member_id, member_entries in by_member.items():
                folded = _fold_without_gap(members[member_id].state, [e.recorded for e in member_entries])
                if folded is None:
                    gapped.append(member_id)
                else:
                    outcomes[member_id] = folded
            filled = await asyncio.gather(*(
                self._advance(members[m], [e.recorded for e in by_member[m]]) for m in gapped))
        outcomes.update(zip(gapped, filled))
        for member_id, (state, applied, duplicates, gaps, gap_entries) in outcomes.items():
            members[member_id].state = state
            result.applied += applied
            result.duplicates += duplicates
            result.gaps_filled += gaps
            result.gap_entries += gap_entries

        with trace.stage("write"):
            await self._write(members, views, read_models, result)
        for member_id, member in members.items():  # members refused by a fence were left out
            self._cache.put(member_id, partition_of[member_id], member.state)
        await self._save_progress(messages)
        return result

    async def _save_progress(self, messages: list[InputMessage]) -> None:
        if self.progress is not None:
            await save_progress(self.progress, messages)

    def _stores_of(self, ns: str) -> tuple[ViewStore, ReadModels]:
        stores = self._stores.get(ns)
        if stores is None:
            stores = self._stores[ns] = (self._views_for(ns), self._read_models_for(ns))
        return stores

    async def _load(self, member_ids: list[str], views: ViewStore, read_models: ReadModels,
                    result: ProjectionReport) -> dict[str, _Member]:
        members: dict[str, _Member] = {}
        missing = []
        for member_id in member_ids:
            cached = self._cache.get(member_id)
            if cached is None:
                missing.append(member_id)
            else:  # the cache holds what both stores were last written with
                members[member_id] = _Member(cached, cached.seq, cached)
        result.cache_hits += len(members)
        result.loaded += len(missing)
        if missing:
            in_redis, in_cassandra = await asyncio.gather(views.read_many(missing), read_models.read_states(missing))
            for member_id in missing:
                redis_state = in_redis.get(member_id)
                cassandra_state = in_cassandra.get(member_id)
                candidates = [s for s in (redis_state, cassandra_state) if s is not None]
                state = max(candidates, key=lambda s: s.seq) if candidates else MemberState.empty(member_id)
                members[member_id] = _Member(
                    lean(state), redis_state.seq if redis_state is not None else 0, cassandra_state)
        return members

    async def _advance(self, member: _Member, entries: list[Recorded]) -> _Advanced:
        state = member.state
        applied = duplicates = gaps = gap_entries = 0
        for recorded in sorted(entries, key=lambda r: r.seq):
            if recorded.seq <= state.seq:
                duplicates += 1
                continue
            if recorded.seq > state.seq + 1:
                fill = await self.event_store.accepted_between(state.member_id, state.seq, recorded.seq - 1)
                check_gap_fill(state.member_id, state.seq, recorded.seq - 1, fill)
                for missed in fill:
                    state = evolve(state, missed)
                gaps += 1
                gap_entries += len(fill)
            state = evolve(state, recorded)
            applied += 1
        return lean(state), applied, duplicates, gaps, gap_entries

    async def _write(self, members: dict[str, _Member], views: ViewStore, read_models: ReadModels,
                     result: ProjectionReport) -> None:
        to_redis = [m.state for m in members.values() if m.state.seq > m.redis_seq]
        to_cassandra = [m.state for m in members.values()
                        if m.state.seq > (m.cassandra.seq if m.cassandra is not None else 0)]
        outcomes = await asyncio.gather(
            views.write_many(to_redis), read_models.write_many(to_cassandra), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            for member_id in members:
                self._cache.drop(member_id)
            raise failures[0]
        moved = outcomes[0]
        assert isinstance(moved, int)
        result.members_written = len({s.member_id for s in to_redis} | {s.member_id for s in to_cassandra})
        result.redis_refused = len(to_redis) - moved
        if result.redis_refused:
            # Another writer is ahead in Redis for some of them: reload those members next time.
            log.info("%d Redis view write(s) refused by the seq fence in namespace %s", result.redis_refused, self._ns)
            for state in to_redis:
                del members[state.member_id]
                self._cache.drop(state.member_id)

