"""The replay: rebuild every projection (Redis views, Cassandra read models) from the ledger topic into
a fresh namespace, verify it against the event store, switch readers over, catch up.

Steps (each a method, so a test or an operator can run them one at a time; `Replay.run` chains them):

1. `prepare`   resolve the namespaces (the active one, a fresh one to build: the next free ``vN``
               by default), capture the ledger's end offsets (the replay reads a fixed range) and
               the start offsets (the beginning, or ``offsets_for_times(from_timestamp)``), create
               the new namespace in every namespace store (Cassandra tables).
2. `rebuild`   read the range with a consumer assigned to every partition, decode, fold each member
               in memory (`LedgerFold`: `evolve`, an entry at or below the member's seq is a
               duplicate and skipped, an entry beyond seq + 1 waits for the gap to close), fill the
               gaps left at the end from the event store (`accepted_between`; with a start
               timestamp that is each member's history before it), copy from the active namespace
               the members without an entry in the range (with a start timestamp only), then write
               each member's final state once: Redis in pipelined chunks, Cassandra concurrently.
3. `verify`    every member of the event store and of the new namespace against the fold of the
               event store (`app.service.verify`). Events decided meanwhile make a view *behind*:
               accepted when it is the store's history up to its seq.
4. `top_up`    write those members at the event store's seq (fenced), so nothing stays behind.
5. `switch`    record the replay next to the pointer (`ReplayRecords`: old and new namespace, the
               end offsets, phase "catch-up"), then one atomic compare-and-set of
               ``ledger:active-namespace``: the API and the live projector follow the pointer.
               Refused when the verification failed.
6. `catch_up`  read the ledger from the recorded end offsets to the new end and apply it to the new
               namespace with the projector's own code (fenced by seq: racing the live projector,
               which follows the pointer from its next batch, is harmless). Entries that arrived
               during the rebuild are not lost. Then the record goes (the replay is complete), or
               moves to phase "drop-old" with ``--drop-old``.
7. `drop_old`  wait until no live projector acknowledges the old namespace (`ProjectorAcks`: each
               projector records the namespace its batches write, renewed by a heartbeat with a time
               to live; one whose acknowledgement expired is not live), at most ``drop_timeout_s``;
               then the readers' grace (the read API re-reads the pointer every 0.5 s), then delete
               the old namespace from every namespace store and the record. On timeout the old
               namespace and the record are kept.

While it runs, the live projector keeps serving the old namespace untouched: the replay never
writes to it.

A stop after the switch. Between the switch and the end of the catch-up, the entries after the
recorded end offsets that the live projector applied before it saw the new pointer are only in
the old namespace; the projector's gap fill repairs a member only at its next entry. So the record
is written before the switch, and `run` starts with `resume`: when a record exists and the pointer
names its new namespace, the switch happened, and the run finishes that replay (the catch-up from
the recorded offsets, then the drop with ``--drop-old``) instead of starting another one. When the
pointer does not name it, the switch never happened: the record is discarded and the run replays
afresh, skipping the half-built namespace (as it does with a record left at the drop by a run
without ``--drop-old``: the old namespace is then kept). The other remedy, switching last (catching up before
the switch), does not close the gap on its own: the live projector writes the old namespace until
it reads the new pointer, so entries applied between the catch-up's end and the switch would need a
second catch-up after it, which could stop just the same.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from app.domain.state import MemberState
from app.domain.views import lean
from app.service.ledger_fold import LedgerFold, decode_entries
from app.service.ports import (
    CATCH_UP,
    DROP_OLD,
    EventStore,
    LedgerReadError,
    LedgerSource,
    MessageCodec,
    NamespacePointer,
    NamespaceStore,
    ProjectorAcks,
    ReadModels,
    ReplayRecord,
    ReplayRecords,
    SwitchRefused,
    ViewStore,
)
from app.service.projector import Projector
from app.service.retry import for_chunks, with_retries
from app.service.verify import Verifier, VerifyReport

log = logging.getLogger(__name__)

T = TypeVar("T")

_VERSIONED = re.compile(r"^v(\d+)$")
REDIS_CHUNK_LICENSES = 10_000  # licenses per Redis pipeline (with the members bound: a few MB of JSON)


class ReplayError(RuntimeError):
    """A replay cannot start or continue (bad namespace, unreadable ledger, failed verification)."""


def next_namespace(active: str, taken: Iterable[str]) -> str:
    """The next ``vN`` after the active namespace that nothing uses yet (``v1`` -> ``v2``)."""
    match = _VERSIONED.match(active)
    n = int(match.group(1)) + 1 if match else 1
    used = set(taken) | {active}
    while f"v{n}" in used:
        n += 1
    return f"v{n}"


def redis_chunks(states: list[MemberState], members: int, licenses: int = REDIS_CHUNK_LICENSES
                 ) -> Iterator[list[MemberState]]:
    """Consecutive chunks of at most ``members`` states and, unless one state alone exceeds it,
    ``licenses`` licenses: a pipeline stays a few MB, well within the client's socket timeout."""
    chunk: list[MemberState] = []
    weight = 0
    for state in states:
        if chunk and (len(chunk) >= members or weight + len(state.licenses) > licenses):
            yield chunk
            chunk, weight = [], 0
        chunk.append(state)
        weight += len(state.licenses)
    if chunk:
        yield chunk


# --- progress ---------------------------------------------------------------------------


class ReplayObserver:
    """Progress callbacks (the CLI renders them); this base class ignores them all. `read_progress`
    is called from the reading thread."""

    def reading(self, run: ReplayRun) -> None: ...

    def read_progress(self, positions: dict[int, int], events: int) -> None: ...

    def phase(self, label: str, total: int, detail: str = "") -> None:
        """A step begins: a short ``label`` ("write", "verify"...), its ``total`` units, a ``detail`` line."""

    def advance(self, done: int, total: int) -> None: ...

    def note(self, message: str) -> None: ...


@dataclass
class ReplayRun:
    """What a replay decided and did: its plan, then the counts of every step."""

    old_ns: str
    new_ns: str
    topic: str
    from_timestamp: int | None
    start: dict[int, int]
    end: dict[int, int]
    started: float = field(default_factory=time.monotonic)
    events_read: int = 0
    undecodable: int = 0
    applied: int = 0
    duplicates: int = 0
    members_rebuilt: int = 0
    members_copied: int = 0
    gaps_filled: int = 0
    gap_entries: int = 0
    read_seconds: float = 0.0
    rebuild_seconds: float = 0.0
    verification: VerifyReport | None = None
    topped_up: int = 0
    switched: bool = False
    caught_up_entries: int = 0
    caught_up_applied: int = 0
    drop_old: bool = False  # the old namespace is to be dropped after the catch-up
    resumed: bool = False  # this run finished a replay a previous run left after its switch
    projectors: int = 0  # live projectors that had acknowledged the new namespace when the old one was dropped
    dropped: dict[str, int] = field(default_factory=dict)  # per namespace store: keys or tables deleted
    elapsed: float = 0.0

    @property
    def events_in_range(self) -> int:
        return sum(max(0, self.end[p] - self.start.get(p, self.end[p])) for p in self.end)

    @property
    def members(self) -> int:
        return self.members_rebuilt + self.members_copied

    @property
    def events_per_second(self) -> float:
        """Ledger entries per second of the rebuild (read, decode, fold, gap fill and write)."""
        return self.events_read / self.rebuild_seconds if self.rebuild_seconds > 0 else 0.0


# --- the replay -------------------------------------------------------------------------


class FixedPointer:
    """A NamespacePointer that always names one namespace (the replay's catch-up projector)."""

    def __init__(self, ns: str):
        self.ns = ns

    async def active(self) -> str:
        return self.ns

    async def switch(self, expected: str, new: str) -> None:
        raise SwitchRefused(expected, self.ns)


@dataclass(frozen=True)
class ReplayStores:
    """Everything a replay reads and writes, built by the composition root."""

    event_store: EventStore
    codec: MessageCodec
    pointer: NamespacePointer
    namespaces: Sequence[NamespaceStore]  # every store that holds projection namespaces
    views_for: Callable[[str], ViewStore]
    read_models_for: Callable[[str], ReadModels]
    ledger: Callable[[], LedgerSource]  # opened on first use
    records: ReplayRecords  # the unfinished replay, next to the pointer
    acks: ProjectorAcks  # the namespace each live projector writes
    transient: tuple[type[BaseException], ...] = ()  # store errors worth retrying (the work is idempotent)


class Replay:
    def __init__(self, stores: ReplayStores, *, observer: ReplayObserver | None = None, topic: str = "",
                 member_cache_size: int = 50_000, member_cache_bytes: int | None = None, redis_chunk: int = 500,
                 cassandra_chunk: int = 50, concurrency: int = 4, drop_grace_s: float = 1.0,
                 drop_timeout_s: float = 60.0, ack_poll_s: float = 0.5):
        """``cassandra_chunk`` members per concurrent unit of Cassandra work and ``concurrency`` units
        at once bound the requests in flight (too many and the driver reports the connection
        overloaded); a unit failing with a transient error is retried (the work is idempotent).

        Dropping the old namespace waits at most ``drop_timeout_s`` (polling every ``ack_poll_s``)
        for every live projector to acknowledge the new one, then ``drop_grace_s`` for the readers:
        they hold no acknowledgement, but re-read the pointer within a known bound (the read API's
        pointer cache)."""
        self.stores = stores
        self.event_store = stores.event_store
        self.topic = topic
        self.member_cache_size = member_cache_size
        self.member_cache_bytes = member_cache_bytes
        self._reader: LedgerSource | None = None
        self.observer = observer or ReplayObserver()
        self.redis_chunk = redis_chunk
        self.cassandra_chunk = cassandra_chunk
        self.concurrency = concurrency
        self.drop_grace_s = drop_grace_s
        self.drop_timeout_s = drop_timeout_s
        self.ack_poll_s = ack_poll_s
        self.last_run: ReplayRun | None = None  # the run in progress or last run (for error reports)

    @property
    def reader(self) -> LedgerSource:
        if self._reader is None:
            self._reader = self.stores.ledger()
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @property
    def transient(self) -> tuple[type[BaseException], ...]:
        return self.stores.transient

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(call, self.transient)

    def _views(self, ns: str) -> ViewStore:
        return self.stores.views_for(ns)

    def _read_models(self, ns: str) -> ReadModels:
        return self.stores.read_models_for(ns)

    # --- all steps ----------------------------------------------------------------------

    async def run(self, *, namespace: str | None = None, from_timestamp: int | None = None, switch: bool = True,
                  drop_old: bool = False, after_rebuild: Callable[[ReplayRun], Awaitable[None]] | None = None,
                  before_switch: Callable[[ReplayRun], Awaitable[None]] | None = None) -> ReplayRun:
        """Every step; returns with ``run.switched`` False when the verification failed (nothing is
        switched nor dropped then; the new namespace is left for inspection).

        A replay that a previous run left after its switch (its catch-up not done) is finished
        instead, whatever the other options: see `resume`."""
        if drop_old and not switch:
            raise ReplayError("--drop-old needs the switch (it would drop the namespace readers use)")
        resumed = await self.resume(drop_old=drop_old)
        if resumed is not None:
            return resumed
        run = await self.prepare(namespace=namespace, from_timestamp=from_timestamp)
        run.drop_old = drop_old
        self.last_run = run
        await self.rebuild(run)
        if after_rebuild is not None:
            await after_rebuild(run)
        verification = await self.verify(run)
        if verification.ok:
            await self.top_up(run)
            if before_switch is not None:
                await before_switch(run)
            if switch:
                await self.switch(run)
                await self.catch_up(run)
                if drop_old:
                    await self.drop_old(run)
        run.elapsed = time.monotonic() - run.started
        return run

    # --- 0. resume ----------------------------------------------------------------------

    async def resume(self, *, drop_old: bool) -> ReplayRun | None:
        """Finish the replay recorded by a previous run, if it switched readers; None when there is
        nothing to finish. A record whose switch never happened (the pointer still names, or moved
        past, another namespace) is discarded: the half-built namespace is skipped as after any
        replay that stopped before its switch. A record left at the drop (the catch-up done) is
        finished only with ``drop_old``; without it, the old namespace is kept and the record
        discarded."""
        records = self.stores.records
        record = await self._retrying(records.load)
        if record is None:
            return None
        active = await self._retrying(self.stores.pointer.active)
        if active != record.new_ns or (record.phase == DROP_OLD and not drop_old):
            await self._retrying(records.clear)
            self.observer.note(
                f"an earlier replay into {record.new_ns} did not switch readers (they are on {active}): starting afresh"
                if active != record.new_ns else
                f"namespace {record.old_ns} of the earlier replay into {record.new_ns} is kept (no --drop-old)")
            return None
        if record.topic != self.topic:
            raise ReplayError(f"an unfinished replay of {record.topic} switched readers to {record.new_ns}: "
                              f"finish it with that ledger topic (this one reads {self.topic})")
        run = ReplayRun(old_ns=record.old_ns, new_ns=record.new_ns, topic=record.topic, from_timestamp=None,
                        start=dict(record.end), end=dict(record.end), switched=True, resumed=True,
                        drop_old=drop_old)
        self.last_run = run
        self.observer.note(f"finishing the replay that switched readers from {run.old_ns} to {run.new_ns} "
                           f"({'catch up' if record.phase == CATCH_UP else 'drop the old namespace'})")
        if record.phase == CATCH_UP:
            await self.catch_up(run)
        if drop_old:
            await self.drop_old(run)
        run.elapsed = time.monotonic() - run.started
        return run

    # --- 1. prepare ---------------------------------------------------------------------

    async def prepare(self, *, namespace: str | None = None, from_timestamp: int | None = None) -> ReplayRun:
        started = time.monotonic()
        stores = self.stores.namespaces
        old = await self.stores.pointer.active()
        if namespace is None:
            taken: set[str] = set()
            for store in stores:
                taken |= await store.namespaces()
            new = next_namespace(old, taken)
        else:
            new = namespace
        try:
            for store in stores:
                store.check(new)
        except ValueError as exc:
            raise ReplayError(str(exc)) from None
        if new == old:
            raise ReplayError(f"namespace {new} is the active one: a replay builds a fresh namespace")
        for store in stores:
            if await store.holds_data(new):
                raise ReplayError(f"namespace {new} already holds {store.name} data: choose another --namespace")
        try:
            end = await asyncio.to_thread(self.reader.end_offsets)
            if from_timestamp is None:
                start = await asyncio.to_thread(self.reader.beginning_offsets)
            else:
                start = await asyncio.to_thread(self.reader.offsets_for_time, from_timestamp)
        except LedgerReadError as exc:
            raise ReplayError(str(exc)) from None
        start = {p: min(start.get(p, end[p]), end[p]) for p in end}
        for store in stores:
            await store.create(new)
        return ReplayRun(old_ns=old, new_ns=new, topic=self.topic, from_timestamp=from_timestamp,
                         start=start, end=end, started=started)

    # --- 2. rebuild ---------------------------------------------------------------------

    async def rebuild(self, run: ReplayRun) -> None:
        began = time.monotonic()
        self.observer.reading(run)
        try:
            fold = await asyncio.to_thread(self._read_and_fold, run)
        except LedgerReadError as exc:
            raise ReplayError(str(exc)) from None
        run.read_seconds = time.monotonic() - began

        await self._fill_gaps(fold, run)
        states = fold.states()
        run.applied, run.duplicates, run.members_rebuilt = fold.applied, fold.duplicates, len(states)
        if run.from_timestamp is not None:
            copied = await self._copy_untouched(run, set(fold.members))
            run.members_copied = len(copied)
            states.extend(copied)
        await self._write(run.new_ns, states)
        run.rebuild_seconds = time.monotonic() - began

    def _read_and_fold(self, run: ReplayRun) -> LedgerFold:
        """Blocking (runs in a thread): read the range, decode, fold."""
        fold = LedgerFold()
        positions = dict(run.start)
        events = 0
        for batch in self.reader.read(run.start, run.end):
            for message in batch:
                positions[message.partition] = message.offset + 1
            entries, undecodable = decode_entries(batch, self.stores.codec)
            run.undecodable += undecodable  # their members end behind: the verification tops them up
            for entry, _ in entries:
                fold.add(entry.recorded)
            events += len(batch)
            run.events_read = events
            self.observer.read_progress(positions, events)
        return fold

    async def _fill_gaps(self, fold: LedgerFold, run: ReplayRun) -> None:
        gaps = fold.gaps()
        if gaps:
            self.observer.phase("gap fill", len(gaps), f"{len(gaps):,} member(s) take history from the event store")
        while gaps:
            members = list(gaps)

            async def fill(chunk: Sequence[str]) -> None:
                fetched = await self._retrying(lambda: asyncio.gather(*(
                    self.event_store.accepted_between(m, *gaps[m]) for m in chunk)))
                for member_id, recorded in zip(chunk, fetched):
                    run.gap_entries += fold.fill(member_id, recorded)
                    run.gaps_filled += 1

            await for_chunks(members, self.cassandra_chunk, self.concurrency, fill, self.observer.advance)
            gaps = fold.gaps()

    async def _copy_untouched(self, run: ReplayRun, touched: set[str]) -> list[MemberState]:
        """Members of the active namespace without a ledger entry after the timestamp, as they are."""
        present: set[str] = set()
        for store in self.stores.namespaces:
            present |= await store.members(run.old_ns)
        members = sorted(present - touched)
        if members:
            self.observer.phase("copy", len(members), f"{len(members):,} member(s) without entries after the "
                                f"timestamp, as they are in namespace {run.old_ns}")
        views = self._views(run.old_ns)
        copied: list[MemberState] = []
        for i in range(0, len(members), self.redis_chunk):
            found = await self._retrying(lambda: views.read_many(members[i:i + self.redis_chunk]))
            copied.extend(found.values())
            self.observer.advance(min(i + self.redis_chunk, len(members)), len(members))
        return copied

    async def _write(self, ns: str, states: list[MemberState], label: str = "write") -> None:
        """Each member once: Redis pipelined in chunks, Cassandra members concurrently, both at once."""
        views, read_models = self._views(ns), self._read_models(ns)
        total = 2 * len(states)
        self.observer.phase(label, total, f"{len(states):,} member(s) to Redis and Cassandra, namespace {ns}")
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            self.observer.advance(done, total)

        async def to_redis() -> None:
            for chunk in redis_chunks(states, self.redis_chunk):
                await self._retrying(lambda: views.write_many(chunk))  # fenced by seq: idempotent
                advance(len(chunk))

        async def to_cassandra(chunk: Sequence[MemberState]) -> None:
            await self._retrying(lambda: read_models.write_many(list(chunk)))  # fenced by seq: idempotent
            advance(len(chunk))

        await asyncio.gather(to_redis(), for_chunks(states, self.cassandra_chunk, self.concurrency, to_cassandra))

    # --- 3. verify, 4. top up -----------------------------------------------------------

    async def verify(self, run: ReplayRun) -> VerifyReport:
        members = await self.members_to_verify(run.new_ns)
        self.observer.phase("verify", len(members), f"{len(members):,} member(s) against the event store")
        verifier = Verifier(self.event_store, self._views(run.new_ns), self._read_models(run.new_ns),
                            chunk=self.cassandra_chunk, concurrency=self.concurrency, transient=self.transient)
        run.verification = await verifier.verify(run.new_ns, members, allow_behind=True,
                                                 progress=self.observer.advance)
        return run.verification

    async def members_to_verify(self, ns: str) -> set[str]:
        """Every member of the event store and of the namespace in every namespace store."""
        found = await asyncio.gather(self.event_store.member_ids(),
                                     *(store.members(ns) for store in self.stores.namespaces))
        return set().union(*found)

    async def top_up(self, run: ReplayRun) -> None:
        """Members behind the event store (events decided during the rebuild) written at its seq."""
        behind = run.verification.behind if run.verification is not None else []
        if not behind:
            return
        states = [lean(b.state) for b in behind]
        await self._write(run.new_ns, states, label="top up")
        run.topped_up = len(states)

    # --- 5. switch, 6. catch up, 7. drop ------------------------------------------------

    async def switch(self, run: ReplayRun) -> None:
        """Record the replay (its end offsets: where the catch-up starts), then switch. A stop
        between the two leaves a record whose switch the pointer says did not happen."""
        if run.verification is None or not run.verification.ok:
            raise ReplayError(f"namespace {run.new_ns} is not verified: readers stay on {run.old_ns}")
        records = self.stores.records
        await self._retrying(lambda: records.save(
            ReplayRecord(run.old_ns, run.new_ns, run.topic, dict(run.end), CATCH_UP)))
        try:
            await self.stores.pointer.switch(run.old_ns, run.new_ns)
        except SwitchRefused as exc:
            await self._retrying(records.clear)
            raise ReplayError(str(exc)) from None
        run.switched = True
        self.observer.note(f"switched readers from {run.old_ns} to {run.new_ns}")

    async def catch_up(self, run: ReplayRun) -> None:
        """Apply the ledger entries appended since the captured end offsets to the new namespace.
        Then the record moves on to the drop (``run.drop_old``) or goes: the replay is complete."""
        views, read_models = self._views(run.new_ns), self._read_models(run.new_ns)
        projector = Projector(self.event_store, self.stores.codec, lambda _: views, lambda _: read_models,
                              FixedPointer(run.new_ns), cache_size=self.member_cache_size,
                              cache_bytes=self.member_cache_bytes)
        try:
            new_end = await asyncio.to_thread(self.reader.end_offsets)
        except LedgerReadError as exc:
            raise ReplayError(f"catching up after the switch to {run.new_ns}: {exc}") from None
        start = {p: run.end.get(p, 0) for p in new_end}
        total = sum(max(0, new_end[p] - start[p]) for p in new_end)
        self.observer.phase("catch up", total, f"{total:,} entries appended since the rebuild read the ledger")
        batches = None
        try:
            batches = self.reader.read(start, new_end)
            while (batch := await asyncio.to_thread(next, batches, None)) is not None:
                result = await self._retrying(lambda: projector.process(batch))  # fenced: safe to redo
                run.caught_up_entries += len(batch)
                run.caught_up_applied += result.applied + result.gap_entries
                self.observer.advance(run.caught_up_entries, total)
        except LedgerReadError as exc:
            raise ReplayError(f"catching up after the switch to {run.new_ns}: {exc}") from None
        finally:
            close = getattr(batches, "close", None)  # a generator: stop its consumer loop now
            if close is not None:
                close()
        run.end = new_end
        records = self.stores.records
        if run.drop_old:
            await self._retrying(lambda: records.save(
                ReplayRecord(run.old_ns, run.new_ns, run.topic, dict(new_end), DROP_OLD)))
        else:
            await self._retrying(records.clear)

    async def drop_old(self, run: ReplayRun) -> None:
        """Once no live projector writes the old namespace any more, and the readers' grace has
        passed, delete it; on timeout it is kept (ReplayError), and so is the record."""
        if not run.switched:
            raise ReplayError(f"not switched: namespace {run.old_ns} is still the active one")
        await self.await_projectors(run)
        stores = self.stores.namespaces
        self.observer.phase("drop", len(stores), f"namespace {run.old_ns}: "
                            + ", ".join(store.name for store in stores))
        await asyncio.sleep(self.drop_grace_s)
        for done, store in enumerate(stores, 1):
            run.dropped[store.name] = await self._retrying(lambda: store.drop(run.old_ns))
            self.observer.advance(done, len(stores))
        await self._retrying(self.stores.records.clear)

    async def await_projectors(self, run: ReplayRun) -> None:
        """Wait until no live projector acknowledges the old namespace: each has acknowledged the new
        one (or a later one), or stopped being live (its acknowledgement expired). A projector
        acknowledges only once no batch of the old namespace is in flight, so from then on nothing
        writes the old namespace."""
        deadline = time.monotonic() + self.drop_timeout_s
        first = True
        while True:
            live = await self._retrying(self.stores.acks.live)
            behind = sorted(w for w, ns in live.items() if ns == run.old_ns)
            if not behind:
                run.projectors = len(live)
                return
            if first:
                self.observer.note(f"waiting for {len(behind)} live projector(s) to acknowledge {run.new_ns} "
                                   f"(at most {self.drop_timeout_s:g} s)")
                first = False
            if time.monotonic() >= deadline:
                raise ReplayError(
                    f"{len(behind)} live projector(s) still write {run.old_ns} after {self.drop_timeout_s:g} s "
                    f"({', '.join(behind[:3])}{', ...' if len(behind) > 3 else ''}): namespace {run.old_ns} is "
                    f"kept, readers are on {run.new_ns}; run `ledger replay --drop-old` again to drop it")
            await asyncio.sleep(self.ack_poll_s)
