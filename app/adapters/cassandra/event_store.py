"""The Cassandra event store: members' decisions in bucket partitions, one Paxos round per bucket.

A member's decisions live in the partition of its bucket, ``crc32(member_id) mod event_buckets``
(migration 0008 fixes the count per keyspace), clustered by (member_id, seq, sub). Each member has a
head row at (seq, sub) = (-1, 0) holding the position of its last stored decision (head_seq, head_sub).

An append groups the members of a micro-batch by bucket and sends, per bucket, one single-partition
conditional batch: for each member, the condition on its own head (``IF head_seq = ? AND head_sub =
?``; ``IF NOT EXISTS`` on the head row of a new member), the head's move to its last row and its rows.
Cassandra applies such a batch whole or not at all, in one Paxos round, so a decision is stored only
by a writer that decided from the member's latest state, and a bucket of k members costs one round
instead of k. A batch refused for one stale member refuses all of its members: the answer carries
every member's current head, the stale ones are reported lost (the decider reloads and decides them
again) and the others are appended again at once, in a new batch. A bucket's batches go one at a time
(a second round on a partition while one is in flight would contend for its ballot) and are cut at
BATCH_BYTES, under the default batch_size_fail_threshold. librdkafka's default partitioner puts a
key in partition ``crc32(key) mod partitions``: with a bucket count that is a multiple of the
partition count, a bucket's members all come from one input partition, so two workers never contend
for a bucket.

Each event's position is also kept in member_event_ids ((member_id), event_id, seq, sub), so `find`
and `find_many` are point reads, not scans. A conditional batch covers a single partition of a single
table, so those rows cannot join the append's batch; they are written before it, with plain idempotent
INSERTs. Every stored row therefore has its entry, whatever crashes in between; an append that loses
leaves entries pointing at positions now holding other events, which is why the position is in the key
(no entry overwrites another) and readers check the event id of the row found there.

A snapshot whose schema the code can no longer read is skipped and the state is rebuilt from older
snapshots or events. A member keeps its newest SNAPSHOTS_KEPT snapshots: saving one reads the
positions of the newest ones and deletes the older ones with one range delete within the member's
snapshot partition (``(seq, sub) < (?, ?)``).
"""
from __future__ import annotations

import asyncio
import logging
import zlib
from collections import defaultdict

from cassandra.query import BatchStatement, BatchType

from app.adapters.avro.codec import default_codec
from app.adapters.avro.mapping import decode_event, decode_snapshot, encode_event, encode_snapshot
from app.adapters.cassandra.aio import execute, pages
from app.adapters.cassandra.batches import PARTITIONS_PER_BATCH
from app.domain.events import Recorded
from app.domain.history import ACCEPTED, Source, StoredDecision, check_follows, fold
from app.domain.state import MemberState
from app.service.ports import SNAPSHOTS_KEPT, DecodeError, LoadedState

log = logging.getLogger(__name__)

TABLE = "member_events_by_bucket"
LOAD_CHUNK = 100  # members per IN read of a load
BATCH_BYTES = 40 * 1024  # of one conditional batch; Cassandra's default batch_size_fail_threshold is 50 KiB
ROW_OVERHEAD = 80  # bytes a row adds beyond its strings and blobs (ints, names, framing)
APPEND_ROUNDS = 3  # batches of a bucket a member can be carried into before it is reported lost
COLUMNS = ("member_id, seq, sub, kind, event_id, clock, schema_version, payload, reason, detail, "
           "source_topic, source_partition, source_offset")


class LayoutMissing(RuntimeError):
    """The keyspace has no event_store_layout: `ledger migrate` has not applied migration 0008."""


def bucket_of(member_id: str, buckets: int) -> int:
    return zlib.crc32(member_id.encode()) % buckets


def event_buckets(session, keyspace: str, timeout: float = 30.0) -> int:
    """The keyspace's bucket count, as migration 0008 recorded it."""
    try:
        rows = session.execute_async(
            f"SELECT value FROM {keyspace}.event_store_layout WHERE name = 'event_buckets'", timeout=timeout
        ).result()
    except Exception as exc:  # the driver's InvalidRequest for a table that does not exist
        if "event_store_layout" in str(exc):
            raise LayoutMissing(f"keyspace {keyspace} has no event store layout: run `ledger migrate`") from None
        raise
    row = rows.one() if hasattr(rows, "one") else (list(rows) or [None])[0]
    if row is None:
        raise LayoutMissing(f"keyspace {keyspace} has no event_buckets in event_store_layout: run `ledger migrate`")
    return int(row.value)


class CassandraEventStore:
    def __init__(self, session, keyspace: str, buckets: int | None = None):
        self.session = session
        self.keyspace = ks = keyspace
        self.buckets = buckets or event_buckets(session, keyspace)
        self._bucket_locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        t = f"{ks}.{TABLE}"
        p = session.prepare
        self._insert = p(f"INSERT INTO {t} (bucket, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._first_head = p(f"INSERT INTO {t} (bucket, member_id, seq, sub, head_seq, head_sub) "
                             "VALUES (?, ?, -1, 0, ?, ?) IF NOT EXISTS")
        self._move_head = p(f"UPDATE {t} SET head_seq = ?, head_sub = ? "
                            "WHERE bucket = ? AND member_id = ? AND seq = -1 AND sub = 0 IF head_seq = ? AND head_sub = ?")
        self._index = p(f"INSERT INTO {ks}.member_event_ids (member_id, event_id, seq, sub) VALUES (?, ?, ?, ?)")
        self._lookup = p(f"SELECT seq, sub FROM {ks}.member_event_ids WHERE member_id = ? AND event_id IN ?")
        self._at = p(f"SELECT {COLUMNS} FROM {t} WHERE bucket = ? AND member_id = ? AND (seq, sub) IN ?")
        self._after = p(f"SELECT {COLUMNS} FROM {t} WHERE bucket = ? AND member_id = ? AND (seq, sub) > (?, ?)")
        self._accepted_range = p(
            f"SELECT {COLUMNS} FROM {t} WHERE bucket = ? AND member_id = ? AND seq > ? AND seq <= ?")
        # A load reads many members at once: the newest snapshots of each (one statement per
        # LOAD_CHUNK members), every row of the members without a readable one (one statement per
        # bucket and LOAD_CHUNK of them), the rows after the snapshot of each member with one (a
        # statement each: the bound differs).
        self._snapshots_in = p(
            f"SELECT member_id, seq, sub, schema_version, state FROM {ks}.member_snapshots WHERE member_id IN ? "
            f"PER PARTITION LIMIT {SNAPSHOTS_KEPT}")
        self._all_in = p(f"SELECT {COLUMNS} FROM {t} WHERE bucket = ? AND member_id IN ? AND seq >= 0")
        self._save_snapshot = p(
            f"INSERT INTO {ks}.member_snapshots (member_id, seq, sub, schema_version, state) VALUES (?, ?, ?, ?, ?)")
        self._snapshot_positions = p(f"SELECT seq, sub FROM {ks}.member_snapshots WHERE member_id = ? LIMIT ?")
        self._prune_snapshots = p(f"DELETE FROM {ks}.member_snapshots WHERE member_id = ? AND (seq, sub) < (?, ?)")
        # The members of a bucket are its head rows; within one partition the filter is a scan of it.
        self._members = p(f"SELECT member_id FROM {t} WHERE bucket = ? AND seq = -1 ALLOW FILTERING")
        self._page_first = p(f"SELECT {COLUMNS} FROM {t} WHERE bucket = ? AND member_id = ? AND seq >= 0 LIMIT ?")
        self._page_after = p(
            f"SELECT {COLUMNS} FROM {t} WHERE bucket = ? AND member_id = ? AND (seq, sub) > (?, ?) LIMIT ?")
        codec = default_codec()
        self._event_schema = _schema_label(codec, "DownloadEvent")
        self._snapshot_schema = _schema_label(codec, "MemberSnapshot")

    def bucket(self, member_id: str) -> int:
        return bucket_of(member_id, self.buckets)

    # --- reading ------------------------------------------------------------------------

    async def load(self, member_id: str) -> MemberState:
        return (await self.load_many([member_id]))[member_id].state

    async def load_many(self, member_ids: list[str]) -> dict[str, LoadedState]:
        """The newest snapshots of the members, LOAD_CHUNK members per read; then every row of the
        members without a readable one, one read per bucket (and LOAD_CHUNK of its members), and the
        rows after the snapshot of each member with one. A member the store does not hold (most
        cache misses of a stream of new members) costs no statement of its own: it is absent from
        the answers of its chunk's and its bucket's IN reads."""
        wanted = list(dict.fromkeys(member_ids))
        snapshots: dict[str, MemberState] = {}
        for found in await asyncio.gather(*(self._latest_snapshots(wanted[i:i + LOAD_CHUNK])
                                            for i in range(0, len(wanted), LOAD_CHUNK))):
            snapshots.update(found)
        bare: dict[int, list[str]] = defaultdict(list)
        for m in wanted:
            if m not in snapshots:
                bare[self.bucket(m)].append(m)
        reads = [execute(self.session, self._after, (self.bucket(m), m, s.seq, s.rejections_since_seq))
                 for m, s in snapshots.items()]
        reads += [execute(self.session, self._all_in, (b, ms[i:i + LOAD_CHUNK]))
                  for b, ms in bare.items() for i in range(0, len(ms), LOAD_CHUNK)]
        answers = await asyncio.gather(*reads)
        rows: dict[str, list] = {m: [] for m in wanted}
        for m, after in zip(snapshots, answers):
            rows[m] = after
        for answer in answers[len(snapshots):]:
            for r in answer:
                rows[r.member_id].append(r)
        return {m: LoadedState(fold(snapshots.get(m) or MemberState.empty(m), (_decision(r) for r in rows[m])),
                               len(rows[m]))
                for m in wanted}

    async def _latest_snapshots(self, member_ids: list[str]) -> dict[str, MemberState]:
        """The newest readable snapshot of each member that has one (newest first per partition)."""
        found: dict[str, MemberState] = {}
        for row in await execute(self.session, self._snapshots_in, (member_ids,)):
            if row.member_id in found:
                continue
            try:
                found[row.member_id] = decode_snapshot(row.state)
            except DecodeError as exc:
                log.warning("skipping snapshot of %s at (%s, %s) in %s: %s",
                            row.member_id, row.seq, row.sub, row.schema_version, exc)
        return found

    async def accepted_between(self, member_id: str, after_seq: int, upto_seq: int) -> list[Recorded]:
        rows = await execute(self.session, self._accepted_range, (self.bucket(member_id), member_id, after_seq, upto_seq))
        return [_decision(r).recorded for r in rows if r.kind == ACCEPTED]

    async def find(self, member_id: str, event_id: str) -> StoredDecision | None:
        return (await self.find_many(member_id, [event_id])).get(event_id)

    async def find_many(self, member_id: str, event_ids: list[str]) -> dict[str, StoredDecision]:
        wanted = list(dict.fromkeys(event_ids))
        if not wanted:
            return {}
        entries = await execute(self.session, self._lookup, (member_id, wanted))
        if not entries:
            return {}
        positions = sorted({(e.seq, e.sub) for e in entries})
        found: dict[str, StoredDecision] = {}
        for row in await execute(self.session, self._at, (self.bucket(member_id), member_id, positions)):
            if row.event_id in wanted and row.event_id not in found:  # an entry of a lost append points elsewhere
                found[row.event_id] = _decision(row)
        return found

    async def member_ids(self) -> list[str]:
        return [m async for m in self.stream_member_ids()]

    async def snapshot_positions(self, member_id: str, limit: int = 100) -> list[tuple[int, int]]:
        """The positions of the member's snapshots, newest first."""
        return [(r.seq, r.sub) for r in await execute(self.session, self._snapshot_positions, (member_id, limit))]

    # --- HistoryReader: read only ---------------------------------------------------------

    async def page(self, member_id: str, after: tuple[int, int] | None, limit: int) -> list[StoredDecision]:
        """One clustering-range read: ``(seq, sub) > after LIMIT limit`` of the member's rows."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        bucket = self.bucket(member_id)
        if after is None:
            rows = await execute(self.session, self._page_first, (bucket, member_id, limit))
        else:
            rows = await execute(self.session, self._page_after, (bucket, member_id, after[0], after[1], limit))
        return [_decision(r) for r in rows]

    async def stream_member_ids(self, page_size: int = 1000):
        """Every member once, bucket after bucket (a member lives in one bucket and has one head)."""
        for bucket in range(self.buckets):
            statement = self._members.bind((bucket,))
            statement.fetch_size = page_size
            async for rows in pages(self.session, statement):
                for r in rows:
                    yield r.member_id

    # --- writing ------------------------------------------------------------------------

    async def append(self, decisions: dict[str, list[StoredDecision]],
                     heads: dict[str, tuple[int, int]]) -> list[str]:
        members = [m for m, ds in decisions.items() if ds]
        for m in members:
            check_follows(m, heads[m], decisions[m])
        # The lookup entries first: then no stored row lacks one, whatever fails in between. Every
        # member's entries together, in unlogged batches of at most PARTITIONS_PER_BATCH entries (one
        # statement for several members: the worker's cost is per statement; plain idempotent
        # INSERTs, so a batch that fails part way is simply written again by the retried append).
        await self._write_lookups([(m, d.event.event_id, *d.position) for m in members for d in decisions[m]])
        by_bucket: dict[int, list[str]] = defaultdict(list)
        for m in members:
            by_bucket[self.bucket(m)].append(m)
        lost = await asyncio.gather(*(self._append_bucket(b, ms, decisions, heads) for b, ms in by_bucket.items()))
        return [m for part in lost for m in part]

    async def _append_bucket(self, bucket: int, members: list[str], decisions: dict[str, list[StoredDecision]],
                             heads: dict[str, tuple[int, int]]) -> list[str]:
        """The members of one bucket, in conditional batches of at most BATCH_BYTES, one at a time.
        A refused batch's members whose head is still the expected one go on to the next batch."""
        rows = {m: [self.row(bucket, m, d) for d in decisions[m]] for m in members}
        sizes = {m: sum(map(row_bytes, rows[m])) for m in members}
        rounds = dict.fromkeys(members, 0)
        lost: list[str] = []
        pending = list(members)
        async with self._bucket_locks[bucket]:
            while pending:
                batch, members_in, size = BatchStatement(batch_type=BatchType.UNLOGGED), [], 0
                while pending and (not members_in or size + sizes[pending[0]] <= BATCH_BYTES):
                    m = pending.pop(0)
                    size += sizes[m]
                    members_in.append(m)
                    self._add_member(batch, bucket, m, heads[m], decisions[m][-1].position, rows[m])
                answer = await execute(self.session, batch)
                if answer and answer[0][0]:  # the first column of a conditional answer is [applied]
                    continue
                current = {r.member_id: (r.head_seq, r.head_sub) for r in answer}  # every head that exists
                retry = []
                for m in members_in:
                    rounds[m] += 1
                    stale = current.get(m, (0, 0)) != heads[m]
                    (lost if stale or rounds[m] >= APPEND_ROUNDS else retry).append(m)
                pending = retry + pending
        return lost

    def _add_member(self, batch: BatchStatement, bucket: int, member_id: str, head: tuple[int, int],
                    new_head: tuple[int, int], rows: list[tuple]) -> None:
        if head == (0, 0):
            batch.add(self._first_head, (bucket, member_id, *new_head))
        else:
            batch.add(self._move_head, (*new_head, bucket, member_id, *head))
        for row in rows:
            batch.add(self._insert, row)

    async def _write_lookups(self, entries: list[tuple[str, str, int, int]]) -> None:
        """(member_id, event_id, seq, sub) entries: unlogged batches of at most PARTITIONS_PER_BATCH entries,
        concurrently."""
        statements = []
        for start in range(0, len(entries), PARTITIONS_PER_BATCH):
            chunk = entries[start:start + PARTITIONS_PER_BATCH]
            if len(chunk) == 1:
                statements.append(execute(self.session, self._index, chunk[0]))
                continue
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for entry in chunk:
                batch.add(self._index, entry)
            statements.append(execute(self.session, batch))
        await asyncio.gather(*statements)

    def row(self, bucket: int, member_id: str, d: StoredDecision) -> tuple:
        return (bucket, member_id, d.seq, d.sub, d.kind, d.event.event_id, d.clock, self._event_schema,
                encode_event(d.event), d.reason, d.detail, d.source.topic, d.source.partition, d.source.offset)

    async def save_snapshot(self, state: MemberState) -> None:
        await execute(self.session, self._save_snapshot, (
            state.member_id, state.seq, state.rejections_since_seq, self._snapshot_schema, encode_snapshot(state)))
        # Then (never before: a crash in between leaves one snapshot too many, not too few) the
        # older ones go, below the oldest of the newest SNAPSHOTS_KEPT.
        kept = await self.snapshot_positions(state.member_id, SNAPSHOTS_KEPT)
        if len(kept) == SNAPSHOTS_KEPT:
            await execute(self.session, self._prune_snapshots, (state.member_id, *kept[-1]))


def row_bytes(row: tuple) -> int:
    """What a row adds to a batch: its strings and blobs, and ROW_OVERHEAD for the rest."""
    return ROW_OVERHEAD + sum(len(v) for v in row if isinstance(v, (str, bytes)))


def _schema_label(codec, record_name: str) -> str:
    latest = codec.registry.latest(record_name)
    return f"{latest.name}.v{latest.version}"


def _decision(row) -> StoredDecision:
    return StoredDecision(
        seq=row.seq, sub=row.sub, kind=row.kind, event=decode_event(row.payload), clock=row.clock,
        source=Source(row.source_topic, row.source_partition, row.source_offset),
        reason=row.reason, detail=row.detail,
    )
