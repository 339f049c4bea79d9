"""The Cassandra event store: one partition per member, clustered by (seq, sub).

Appends are conditional (``IF NOT EXISTS``) and, per member, one single-partition batch, which
Cassandra applies atomically: either every decision of the member's micro-batch is stored or none
is, and two writers can never both store a decision at the same position. A snapshot whose schema
the code can no longer read is skipped and the state is rebuilt from older snapshots or events.
"""
from __future__ import annotations

import asyncio
import logging

from cassandra.query import BatchStatement, BatchType

from app.adapters.avro.codec import default_codec
from app.adapters.avro.mapping import decode_event, decode_snapshot, encode_event, encode_snapshot
from app.adapters.cassandra.aio import execute
from app.domain.events import Recorded
from app.domain.history import ACCEPTED, Source, StoredDecision, fold
from app.domain.state import MemberState
from app.service.ports import DecodeError

log = logging.getLogger(__name__)

SNAPSHOTS_TRIED = 3
_COLUMNS = ("member_id, seq, sub, kind, event_id, clock, schema_version, payload, reason, detail, "
            "source_topic, source_partition, source_offset")


class CassandraEventStore:
    def __init__(self, session, keyspace: str):
        self.session = session
        self.keyspace = keyspace
        ks = keyspace
        self._insert = session.prepare(
            f"INSERT INTO {ks}.member_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS")
        self._after = session.prepare(
            f"SELECT {_COLUMNS} FROM {ks}.member_events WHERE member_id = ? AND (seq, sub) > (?, ?)")
        self._all = session.prepare(f"SELECT {_COLUMNS} FROM {ks}.member_events WHERE member_id = ?")
        self._accepted_range = session.prepare(
            f"SELECT {_COLUMNS} FROM {ks}.member_events WHERE member_id = ? AND seq > ? AND seq <= ?")
        self._snapshots = session.prepare(
            f"SELECT seq, sub, schema_version, state FROM {ks}.member_snapshots WHERE member_id = ? LIMIT {SNAPSHOTS_TRIED}")
        self._save_snapshot = session.prepare(
            f"INSERT INTO {ks}.member_snapshots (member_id, seq, sub, schema_version, state) VALUES (?, ?, ?, ?, ?)")
        self._members = session.prepare(f"SELECT DISTINCT member_id FROM {ks}.member_events")
        codec = default_codec()
        self._event_schema = _schema_label(codec, "DownloadEvent")
        self._snapshot_schema = _schema_label(codec, "MemberSnapshot")

    # --- reading ------------------------------------------------------------------------

    async def load(self, member_id: str) -> MemberState:
        state = await self._latest_snapshot(member_id)
        if state is None:
            rows = await execute(self.session, self._all, (member_id,))
            state = MemberState.empty(member_id)
        else:
            rows = await execute(self.session, self._after, (member_id, state.seq, state.rejections_since_seq))
        return fold(state, (_decision(r) for r in rows))

    async def load_many(self, member_ids: list[str]) -> dict[str, MemberState]:
        states = await asyncio.gather(*(self.load(m) for m in member_ids))
        return dict(zip(member_ids, states))

    async def _latest_snapshot(self, member_id: str) -> MemberState | None:
        for row in await execute(self.session, self._snapshots, (member_id,)):
            try:
                return decode_snapshot(row.state)
            except DecodeError as exc:
                log.warning("skipping snapshot of %s at (%s, %s) in %s: %s",
                            member_id, row.seq, row.sub, row.schema_version, exc)
        return None

    async def accepted_between(self, member_id: str, after_seq: int, upto_seq: int) -> list[Recorded]:
        rows = await execute(self.session, self._accepted_range, (member_id, after_seq, upto_seq))
        return [_decision(r).recorded for r in rows if r.kind == ACCEPTED]

    async def find(self, member_id: str, event_id: str) -> StoredDecision | None:
        for row in await execute(self.session, self._all, (member_id,)):
            if row.event_id == event_id:
                return _decision(row)
        return None

    async def member_ids(self) -> list[str]:
        return [r.member_id for r in await execute(self.session, self._members, None)]

    # --- writing ------------------------------------------------------------------------

    async def append(self, decisions: dict[str, list[StoredDecision]]) -> list[str]:
        members = [m for m, ds in decisions.items() if ds]
        results = await asyncio.gather(*(self._append_member(m, decisions[m]) for m in members))
        return [m for m, applied in zip(members, results) if not applied]

    async def _append_member(self, member_id: str, decisions: list[StoredDecision]) -> bool:
        params = [self._row(member_id, d) for d in decisions]
        if len(params) == 1:
            statement, values = self._insert, params[0]
        else:
            statement = BatchStatement(batch_type=BatchType.UNLOGGED)
            for p in params:
                statement.add(self._insert, p)
            values = None
        rows = await execute(self.session, statement, values)
        return bool(rows[0][0]) if rows else False  # first column is [applied]

    def _row(self, member_id: str, d: StoredDecision) -> tuple:
        return (member_id, d.seq, d.sub, d.kind, d.event.event_id, d.clock, self._event_schema,
                encode_event(d.event), d.reason, d.detail, d.source.topic, d.source.partition, d.source.offset)

    async def save_snapshot(self, state: MemberState) -> None:
        await execute(self.session, self._save_snapshot, (
            state.member_id, state.seq, state.rejections_since_seq, self._snapshot_schema, encode_snapshot(state)))


def _schema_label(codec, record_name: str) -> str:
    latest = codec.registry.latest(record_name)
    return f"{latest.name}.v{latest.version}"


def _decision(row) -> StoredDecision:
    return StoredDecision(
        seq=row.seq, sub=row.sub, kind=row.kind, event=decode_event(row.payload), clock=row.clock,
        source=Source(row.source_topic, row.source_partition, row.source_offset),
        reason=row.reason, detail=row.detail,
    )
