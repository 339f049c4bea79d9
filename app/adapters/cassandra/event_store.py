"""The Cassandra event store: one partition per member, clustered by (seq, sub).

Per member, an append is one single-partition batch, which Cassandra applies atomically: either
every decision of the member's micro-batch is stored or none is. The batch is conditional on the
member's head, the static columns (head_seq, head_sub) that hold the position of its last stored
decision: ``IF head_seq = <expected> AND head_sub = <expected>`` (``IF head_seq = null`` for a new
member), and it moves the head to its last row. So a decision is stored only by a writer that
decided from the member's latest state; a per-position ``IF NOT EXISTS`` would let a stale writer
fill a free past slot, (1, 1) below (2, 0), that `load` from a later snapshot never reads.
A snapshot whose schema the code can no longer read is skipped and the state is rebuilt from older
snapshots or events. A member keeps its newest SNAPSHOTS_KEPT snapshots: saving one reads the
positions of the newest ones and deletes the older ones with one range delete within the member's
partition (``(seq, sub) < (?, ?)``), so the partition holds a few snapshots and range tombstones
below them, which a read of the newest ones does not cross.

Each event's position is also kept in member_event_ids ((member_id), event_id, seq, sub), so `find`
and `find_many` are point reads, not scans. A conditional batch covers a single partition of a
single table, so those rows cannot join the append's batch; they are written before it, with plain
idempotent INSERTs. Every stored row therefore has its entry, whatever crashes in between; an append
that loses leaves entries pointing at positions now holding other events, which is why the position
is in the key (no entry overwrites another) and readers check the event id of the row found there.

Partitions written before migrations 0005/0006 have rows but no head and no lookup entries. The
first append that expects a head there is refused; the store then writes the lookup entries of
every row, sets the head to the partition's last row (``IF head_seq = null``) and reports the member
as lost, so the decider reloads it, decides again (now seeing old event ids through the lookup) and
appends. This assumes no writer of the code before 0005 runs any more (stop the old workers before
starting new ones). Until then `find` falls back to reading such a partition.
"""
from __future__ import annotations

import asyncio
import logging

from cassandra.query import BatchStatement, BatchType

from app.adapters.avro.codec import default_codec
from app.adapters.avro.mapping import decode_event, decode_snapshot, encode_event, encode_snapshot
from app.adapters.cassandra.aio import execute, pages
from app.domain.events import Recorded
from app.domain.history import ACCEPTED, Source, StoredDecision, check_follows, fold
from app.domain.state import MemberState
from app.service.ports import SNAPSHOTS_KEPT, DecodeError, LoadedState

log = logging.getLogger(__name__)

LOOKUP_BATCH = 100  # lookup entries per unlogged single-partition batch (tens of bytes each)
LOAD_CHUNK = 100  # members per IN read of a load
_COLUMNS = ("member_id, seq, sub, kind, event_id, clock, schema_version, payload, reason, detail, "
            "source_topic, source_partition, source_offset")


class CassandraEventStore:
    def __init__(self, session, keyspace: str):
        self.session = session
        self.keyspace = keyspace
        ks = keyspace
        insert = f"INSERT INTO {ks}.member_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        self._insert = session.prepare(insert)
        # A new member's rows are also IF NOT EXISTS: a partition of before 0005 has rows and no head.
        self._insert_new = session.prepare(insert + " IF NOT EXISTS")
        self._move_head = session.prepare(
            f"UPDATE {ks}.member_events SET head_seq = ?, head_sub = ? WHERE member_id = ? "
            "IF head_seq = ? AND head_sub = ?")
        self._first_head = session.prepare(
            f"UPDATE {ks}.member_events SET head_seq = ?, head_sub = ? WHERE member_id = ? IF head_seq = null")
        self._positions = session.prepare(f"SELECT seq, sub, event_id FROM {ks}.member_events WHERE member_id = ?")
        self._index = session.prepare(
            f"INSERT INTO {ks}.member_event_ids (member_id, event_id, seq, sub) VALUES (?, ?, ?, ?)")
        self._lookup = session.prepare(
            f"SELECT seq, sub FROM {ks}.member_event_ids WHERE member_id = ? AND event_id IN ?")
        self._at = session.prepare(f"SELECT {_COLUMNS} FROM {ks}.member_events WHERE member_id = ? AND (seq, sub) IN ?")
        self._after = session.prepare(
            f"SELECT {_COLUMNS} FROM {ks}.member_events WHERE member_id = ? AND (seq, sub) > (?, ?)")
        self._all = session.prepare(f"SELECT {_COLUMNS} FROM {ks}.member_events WHERE member_id = ?")
        self._accepted_range = session.prepare(
            f"SELECT {_COLUMNS} FROM {ks}.member_events WHERE member_id = ? AND seq > ? AND seq <= ?")
        # A load reads many members at once: the newest snapshots of each (one statement per
        # LOAD_CHUNK members), then every row of the members without a readable one (likewise), and
        # the rows after the snapshot of each member with one (a statement each: the bound differs).
        self._snapshots_in = session.prepare(
            f"SELECT member_id, seq, sub, schema_version, state FROM {ks}.member_snapshots WHERE member_id IN ? "
            f"PER PARTITION LIMIT {SNAPSHOTS_KEPT}")
        self._all_in = session.prepare(f"SELECT {_COLUMNS} FROM {ks}.member_events WHERE member_id IN ?")
        self._save_snapshot = session.prepare(
            f"INSERT INTO {ks}.member_snapshots (member_id, seq, sub, schema_version, state) VALUES (?, ?, ?, ?, ?)")
        self._snapshot_positions = session.prepare(
            f"SELECT seq, sub FROM {ks}.member_snapshots WHERE member_id = ? LIMIT ?")
        self._prune_snapshots = session.prepare(
            f"DELETE FROM {ks}.member_snapshots WHERE member_id = ? AND (seq, sub) < (?, ?)")
        self._members = session.prepare(f"SELECT DISTINCT member_id FROM {ks}.member_events")
        self._page_first = session.prepare(f"SELECT {_COLUMNS} FROM {ks}.member_events WHERE member_id = ? LIMIT ?")
        self._page_after = session.prepare(
            f"SELECT {_COLUMNS} FROM {ks}.member_events WHERE member_id = ? AND (seq, sub) > (?, ?) LIMIT ?")
        codec = default_codec()
        self._event_schema = _schema_label(codec, "DownloadEvent")
        self._snapshot_schema = _schema_label(codec, "MemberSnapshot")

    # --- reading ------------------------------------------------------------------------

    async def load(self, member_id: str) -> MemberState:
        return (await self._load_chunk([member_id]))[member_id].state

    async def load_many(self, member_ids: list[str]) -> dict[str, LoadedState]:
        """Members LOAD_CHUNK at a time, the chunks concurrently. A member the store does not hold
        (most cache misses of a stream of new members) costs no statement of its own: it is absent
        from the answers of its chunk's two IN reads."""
        wanted = list(dict.fromkeys(member_ids))
        chunks = [wanted[i:i + LOAD_CHUNK] for i in range(0, len(wanted), LOAD_CHUNK)]
        loaded: dict[str, LoadedState] = {}
        for part in await asyncio.gather(*(self._load_chunk(c) for c in chunks)):
            loaded.update(part)
        return loaded

    async def _load_chunk(self, member_ids: list[str]) -> dict[str, LoadedState]:
        snapshots = await self._latest_snapshots(member_ids)
        bare = [m for m in member_ids if m not in snapshots]
        rows: dict[str, list] = {m: [] for m in member_ids}
        reads = [execute(self.session, self._after, (m, s.seq, s.rejections_since_seq)) for m, s in snapshots.items()]
        if bare:
            reads.append(execute(self.session, self._all_in, (bare,)))
        answers = await asyncio.gather(*reads)
        for m, after in zip(snapshots, answers):
            rows[m] = after
        if bare:
            for r in answers[-1]:
                if r.seq is not None:  # a partition holding only its static head reads as one row without one
                    rows[r.member_id].append(r)
        return {m: LoadedState(fold(snapshots.get(m) or MemberState.empty(m), (_decision(r) for r in rows[m])),
                               len(rows[m]))
                for m in member_ids}

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
        rows = await execute(self.session, self._accepted_range, (member_id, after_seq, upto_seq))
        return [_decision(r).recorded for r in rows if r.kind == ACCEPTED]

    async def find(self, member_id: str, event_id: str) -> StoredDecision | None:
        found = await self.find_many(member_id, [event_id])
        if event_id in found:
            return found[event_id]
        # Not in the lookup: decided before it existed, in a partition no append has adopted yet.
        for row in await execute(self.session, self._all, (member_id,)):
            if row.event_id == event_id:
                return _decision(row)
        return None

    async def find_many(self, member_id: str, event_ids: list[str]) -> dict[str, StoredDecision]:
        wanted = list(dict.fromkeys(event_ids))
        if not wanted:
            return {}
        entries = await execute(self.session, self._lookup, (member_id, wanted))
        if not entries:
            return {}
        positions = sorted({(e.seq, e.sub) for e in entries})
        found: dict[str, StoredDecision] = {}
        for row in await execute(self.session, self._at, (member_id, positions)):
            if row.event_id in wanted and row.event_id not in found:  # an entry of a lost append points elsewhere
                found[row.event_id] = _decision(row)
        return found

    async def member_ids(self) -> list[str]:
        return [r.member_id for r in await execute(self.session, self._members, None)]

    async def snapshot_positions(self, member_id: str, limit: int = 100) -> list[tuple[int, int]]:
        """The positions of the member's snapshots, newest first."""
        return [(r.seq, r.sub) for r in await execute(self.session, self._snapshot_positions, (member_id, limit))]

    # --- HistoryReader: read only ---------------------------------------------------------

    async def page(self, member_id: str, after: tuple[int, int] | None, limit: int) -> list[StoredDecision]:
        """One clustering-range read: ``(seq, sub) > after LIMIT limit`` of the member's partition."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if after is None:
            rows = await execute(self.session, self._page_first, (member_id, limit))
        else:
            rows = await execute(self.session, self._page_after, (member_id, after[0], after[1], limit))
        # a partition holding only its static head (no rows) reads as one row without a position
        return [_decision(r) for r in rows if r.seq is not None]

    async def stream_member_ids(self, page_size: int = 1000):
        statement = self._members.bind(())
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
        # member's entries together, in unlogged batches of LOOKUP_BATCH (one statement for many
        # members: the worker's cost is per statement; plain idempotent INSERTs, so a batch that
        # fails part way is simply written again by the retried append).
        entries = [(m, d.event.event_id, *d.position) for m in members for d in decisions[m]]
        await self._write_lookups(entries)
        results = await asyncio.gather(*(self._append_member(m, heads[m], decisions[m]) for m in members))
        return [m for m, applied in zip(members, results) if not applied]

    async def _append_member(self, member_id: str, head: tuple[int, int], decisions: list[StoredDecision]) -> bool:
        new_head = decisions[-1].position
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        if head == (0, 0):
            batch.add(self._first_head, (*new_head, member_id))
            insert = self._insert_new
        else:
            batch.add(self._move_head, (*new_head, member_id, *head))
            insert = self._insert
        for d in decisions:
            batch.add(insert, self._row(member_id, d))
        rows = await execute(self.session, batch)
        if rows and rows[0][0]:  # the first column is [applied]
            return True
        if head != (0, 0) and rows and getattr(rows[0], "head_seq", None) is None:
            await self._adopt(member_id)
        return False

    async def _write_lookups(self, entries: list[tuple[str, str, int, int]]) -> None:
        """(member_id, event_id, seq, sub) entries: unlogged batches of LOOKUP_BATCH, concurrently."""
        statements = []
        for start in range(0, len(entries), LOOKUP_BATCH):
            chunk = entries[start:start + LOOKUP_BATCH]
            if len(chunk) == 1:
                statements.append(execute(self.session, self._index, chunk[0]))
                continue
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for entry in chunk:
                batch.add(self._index, entry)
            statements.append(execute(self.session, batch))
        await asyncio.gather(*statements)

    async def _adopt(self, member_id: str) -> None:
        """Bring a partition written before migrations 0005/0006 up to them: a lookup entry for every
        row, then the head at its last row (in that order, so a crash in between is simply redone)."""
        rows = await execute(self.session, self._positions, (member_id,))
        if not rows:
            return  # no such member: the writer's state came from elsewhere; its reload starts afresh
        await self._write_lookups([(member_id, r.event_id, r.seq, r.sub) for r in rows])
        head = (rows[-1].seq, rows[-1].sub)
        await execute(self.session, self._first_head, (*head, member_id))
        log.info("event store: member %s predates head tracking: %d event ids indexed, head now %s",
                 member_id, len(rows), head)

    def _row(self, member_id: str, d: StoredDecision) -> tuple:
        return (member_id, d.seq, d.sub, d.kind, d.event.event_id, d.clock, self._event_schema,
                encode_event(d.event), d.reason, d.detail, d.source.topic, d.source.partition, d.source.offset)

    async def save_snapshot(self, state: MemberState) -> None:
        await execute(self.session, self._save_snapshot, (
            state.member_id, state.seq, state.rejections_since_seq, self._snapshot_schema, encode_snapshot(state)))
        # Then (never before: a crash in between leaves one snapshot too many, not too few) the
        # older ones go, below the oldest of the newest SNAPSHOTS_KEPT.
        kept = await self.snapshot_positions(state.member_id, SNAPSHOTS_KEPT)
        if len(kept) == SNAPSHOTS_KEPT:
            await execute(self.session, self._prune_snapshots, (state.member_id, *kept[-1]))


def _schema_label(codec, record_name: str) -> str:
    latest = codec.registry.latest(record_name)
    return f"{latest.name}.v{latest.version}"


def _decision(row) -> StoredDecision:
    return StoredDecision(
        seq=row.seq, sub=row.sub, kind=row.kind, event=decode_event(row.payload), clock=row.clock,
        source=Source(row.source_topic, row.source_partition, row.source_offset),
        reason=row.reason, detail=row.detail,
    )
