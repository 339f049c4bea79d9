"""The projector: applies micro-batches of ledger entries to the Redis views and the Cassandra read models.

One call of `Projector.process` handles one micro-batch of ``downloads.ledger`` messages:
1. decode each message (an undecodable one is logged and counted, never fatal);
2. read the active projection namespace once; when it changed since the last batch, drop the cache
   (the states cached are those of the old namespace);
3. group the entries by member and take each member's current view state from the bounded LRU
   cache, else from the stores (Redis view and Cassandra summary, read concurrently; the one with
   the higher seq wins and the other is repaired in this batch), else `MemberState.empty`;
4. apply the member's entries in seq order: an entry at or below the applied seq is a duplicate
   (no-op); an entry beyond applied seq + 1 first fills the gap from the event store
   (`accepted_between`); applying is `app.domain.decide.evolve`;
5. write each member that moved once per batch, to Redis (fenced Lua write) and to Cassandra
   (``USING TIMESTAMP seq``), concurrently. If a write fails, the batch's members leave the cache and
   the error propagates: the caller must not commit the offsets, and the redelivered batch is
   applied again from the stores (the fences make the part that was written a no-op).

Each store is fenced on its own, and a cache miss reads both, so a crash between the Redis and the
Cassandra write is repaired by the redelivery even when every redelivered entry is a duplicate.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from app.adapters.avro.errors import DecodeError
from app.adapters.avro.mapping import LedgerEntry, decode_ledger_entry
from app.domain.decide import evolve
from app.domain.events import Recorded
from app.domain.state import MemberState, ProcessedIds
from app.service.member_cache import MemberCache
from app.service.messages import InputMessage
from app.service.ports import EventStore

log = logging.getLogger(__name__)

_NO_IDS = ProcessedIds()


class ViewWriter(Protocol):
    """The Redis views of one namespace (`app.adapters.redis.view_store.ViewStore`)."""

    async def read_many(self, member_ids: list[str]) -> dict[str, MemberState]: ...

    async def write_many(self, states: list[MemberState]) -> int:
        """Fenced by seq; returns how many moved forward."""


class ReadModelWriter(Protocol):
    """The Cassandra read models of one namespace (`app.adapters.cassandra.read_models.CassandraReadModels`)."""

    async def read_states(self, member_ids: list[str]) -> dict[str, MemberState]: ...

    async def write_many(self, states: list[MemberState], previous: Mapping[str, MemberState] | None = None) -> int: ...


class LedgerGapError(RuntimeError):
    """The event store does not hold the accepted events a ledger gap needs (never expected: the
    decider appends to the store before it publishes to the ledger)."""

    def __init__(self, member_id: str, after_seq: int, upto_seq: int, got: list[int]):
        super().__init__(f"member {member_id}: gap ({after_seq}, {upto_seq}] cannot be filled from the "
                         f"event store (it returned seqs {got})")
        self.member_id = member_id
        self.after_seq = after_seq
        self.upto_seq = upto_seq


@dataclass(slots=True)
class ProjectionResult:
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
        views_for: Callable[[str], ViewWriter],
        read_models_for: Callable[[str], ReadModelWriter],
        namespace: Callable[[], Awaitable[str]],
        cache_size: int = 50_000,
    ):
        """``views_for(ns)`` / ``read_models_for(ns)`` build the writers of a namespace (called once per
        namespace); ``namespace()`` reads the active namespace pointer (once per batch)."""
        self.event_store = event_store
        self._views_for = views_for
        self._read_models_for = read_models_for
        self._namespace = namespace
        self._stores: dict[str, tuple[ViewWriter, ReadModelWriter]] = {}
        self._cache: MemberCache[MemberState] = MemberCache(cache_size)
        self._ns: str | None = None

    @classmethod
    def from_settings(cls, settings, redis_client, cassandra_session, event_store: EventStore | None = None) -> Projector:
        """The production wiring: Redis views, Cassandra read models and event store of ``settings``."""
        from app.adapters.cassandra.event_store import CassandraEventStore
        from app.adapters.cassandra.read_models import CassandraReadModels
        from app.adapters.redis.view_store import ViewStore, active_namespace

        keyspace = settings.cassandra_keyspace
        return cls(
            event_store=event_store or CassandraEventStore(cassandra_session, keyspace),
            views_for=lambda ns: ViewStore(redis_client, ns),
            read_models_for=lambda ns: CassandraReadModels(cassandra_session, keyspace, ns),
            namespace=lambda: active_namespace(redis_client),
            cache_size=settings.member_cache_size,
        )

    @property
    def namespace(self) -> str | None:
        """The namespace of the last batch."""
        return self._ns

    @property
    def cached_members(self) -> int:
        return len(self._cache)

    def drop_partitions(self, partitions: Iterable) -> int:
        """Forget the members of revoked ledger partitions (ints, or TopicPartition-like objects with
        a ``partition`` attribute); returns how many cache entries were dropped."""
        numbers = {p if isinstance(p, int) else p.partition for p in partitions}
        return self._cache.drop_partitions(numbers)

    def drop_cache(self) -> None:
        self._cache.clear()

    # --- one batch ----------------------------------------------------------------------

    async def process(self, messages: list[InputMessage]) -> ProjectionResult:
        result = ProjectionResult(messages=len(messages))
        entries = self._decode(messages, result)

        ns = await self._namespace()
        if ns != self._ns:
            if self._ns is not None:
                log.info("active namespace changed from %s to %s: dropping %d cached members",
                         self._ns, ns, len(self._cache))
                result.cache_dropped = True
            self._cache.clear()
            self._ns = ns
        result.namespace = ns
        if not entries:
            return result
        views, read_models = self._stores_of(ns)

        by_member: dict[str, list[LedgerEntry]] = {}
        partition_of: dict[str, int] = {}
        for entry, partition in entries:
            member_id = entry.recorded.event.member_id
            by_member.setdefault(member_id, []).append(entry)
            partition_of[member_id] = partition

        members = await self._load(list(by_member), views, read_models)
        # Nothing is written before every member advanced: on a LedgerGapError the cache still
        # holds exactly what the stores hold.
        outcomes = await asyncio.gather(*(
            self._advance(members[m], [e.recorded for e in by_member[m]]) for m in by_member))
        for member_id, (state, applied, duplicates, gaps, gap_entries) in zip(by_member, outcomes):
            members[member_id].state = state
            result.applied += applied
            result.duplicates += duplicates
            result.gaps_filled += gaps
            result.gap_entries += gap_entries

        await self._write(members, views, read_models, result)
        for member_id, member in members.items():  # members refused by a fence were left out
            self._cache.put(member_id, partition_of[member_id], member.state)
        return result

    def _decode(self, messages: list[InputMessage], result: ProjectionResult) -> list[tuple[LedgerEntry, int]]:
        entries = []
        for message in messages:
            try:
                if message.value is None:
                    raise DecodeError("truncated", "no value (tombstone)")
                entries.append((decode_ledger_entry(message.value), message.partition))
            except DecodeError as exc:
                result.undecodable += 1
                log.warning("undecodable ledger message at %s[%d]@%d skipped: %s",
                            message.topic, message.partition, message.offset, exc)
        return entries

    def _stores_of(self, ns: str) -> tuple[ViewWriter, ReadModelWriter]:
        stores = self._stores.get(ns)
        if stores is None:
            stores = self._stores[ns] = (self._views_for(ns), self._read_models_for(ns))
        return stores

    async def _load(self, member_ids: list[str], views: ViewWriter, read_models: ReadModelWriter) -> dict[str, _Member]:
        members: dict[str, _Member] = {}
        missing = []
        for member_id in member_ids:
            cached = self._cache.get(member_id)
            if cached is None:
                missing.append(member_id)
            else:  # the cache holds what both stores were last written with
                members[member_id] = _Member(cached, cached.seq, cached)
        if missing:
            in_redis, in_cassandra = await asyncio.gather(views.read_many(missing), read_models.read_states(missing))
            for member_id in missing:
                redis_state = in_redis.get(member_id)
                cassandra_state = in_cassandra.get(member_id)
                candidates = [s for s in (redis_state, cassandra_state) if s is not None]
                state = max(candidates, key=lambda s: s.seq) if candidates else MemberState.empty(member_id)
                members[member_id] = _Member(
                    _lean(state), redis_state.seq if redis_state is not None else 0, cassandra_state)
        return members

    async def _advance(self, member: _Member, entries: list[Recorded]) -> tuple[MemberState, int, int, int, int]:
        state = member.state
        applied = duplicates = gaps = gap_entries = 0
        for recorded in sorted(entries, key=lambda r: r.seq):
            if recorded.seq <= state.seq:
                duplicates += 1
                continue
            if recorded.seq > state.seq + 1:
                fill = await self.event_store.accepted_between(state.member_id, state.seq, recorded.seq - 1)
                got = [r.seq for r in fill]
                if got != list(range(state.seq + 1, recorded.seq)):
                    raise LedgerGapError(state.member_id, state.seq, recorded.seq - 1, got)
                for missed in fill:
                    state = evolve(state, missed)
                gaps += 1
                gap_entries += len(fill)
            state = evolve(state, recorded)
            applied += 1
        return _lean(state), applied, duplicates, gaps, gap_entries

    async def _write(self, members: dict[str, _Member], views: ViewWriter, read_models: ReadModelWriter,
                     result: ProjectionResult) -> None:
        to_redis = [m.state for m in members.values() if m.state.seq > m.redis_seq]
        to_cassandra = [m.state for m in members.values()
                        if m.state.seq > (m.cassandra.seq if m.cassandra is not None else 0)]
        previous = {m.state.member_id: m.cassandra for m in members.values() if m.cassandra is not None}
        outcomes = await asyncio.gather(
            views.write_many(to_redis), read_models.write_many(to_cassandra, previous), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            for member_id in members:
                self._cache.drop(member_id)
            raise failures[0]
        moved = outcomes[0]
        result.members_written = len({s.member_id for s in to_redis} | {s.member_id for s in to_cassandra})
        result.redis_refused = len(to_redis) - moved
        if result.redis_refused:
            # Another writer is ahead in Redis for some of them: reload those members next time.
            log.info("%d Redis view write(s) refused by the seq fence in namespace %s", result.redis_refused, self._ns)
            for state in to_redis:
                del members[state.member_id]
                self._cache.drop(state.member_id)


def _lean(state: MemberState) -> MemberState:
    """Views do not need processed event ids: keep cached states small."""
    return state if not len(state.processed) else replace(state, processed=_NO_IDS)
