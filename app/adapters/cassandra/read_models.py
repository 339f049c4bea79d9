"""The Cassandra read models of DOMAIN.md "Views", one set of tables per projection namespace.

Tables (``ns`` is the projection namespace, e.g. ``v1``; ``deploy/cql/0003_read_models_v1.cql``
creates the ``v1`` ones, the replay creates new namespaces with `ensure_tables`):
- ``rm_{ns}_member_summary``     one row per member: ``seq``, the plan, the member clock and ``state``,
                                 the JSON view state (the same JSON as the Redis view)
- ``rm_{ns}_licenses``           one row per (member, license)
- ``rm_{ns}_title_year_counts``  one row per (member, title, year): the download count

Every write is fenced by ``seq``: each INSERT carries ``USING TIMESTAMP <seq>``, so Cassandra's
last-write-wins keeps, cell by cell, the value of the highest seq ever written; a redelivered or
replayed entry at or below the applied seq can never overwrite a newer one, whatever the order in
which writers arrive. Consequences:
- never write these tables without ``USING TIMESTAMP <seq>`` (a wall-clock timestamp, in
  microseconds, would win over every later seq) and never DELETE rows from them (a tombstone at a
  wall-clock timestamp would shadow them for ever); rebuild into a new namespace, or TRUNCATE.
- a member's license and count rows are written before its summary row, so the summary's ``seq``
  never claims more than the other tables hold: a reader (and the projector on a cache miss) can
  trust the summary ``state`` as what this namespace has applied.
"""
from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cassandra.query import BatchStatement, BatchType

from app.adapters.cassandra.aio import execute
from app.domain.state import License, MemberState, Plan, ProcessedIds
from app.domain.state_json import state_from_dict, state_to_dict

# Cassandra table names are at most 48 characters: "rm_" + ns + "_title_year_counts" leaves 28.
NAMESPACE_PATTERN = re.compile(r"^[a-z0-9_]{1,28}$")
ROWS_PER_BATCH = 20  # rows of one member per single-partition unlogged batch


def check_namespace(ns: str) -> str:
    if not NAMESPACE_PATTERN.match(ns):
        raise ValueError(f"projection namespace {ns!r} is not usable in Cassandra table names "
                         f"(lower-case letters, digits and _, at most 28 characters)")
    return ns


def table_names(ns: str) -> tuple[str, str, str]:
    check_namespace(ns)
    return f"rm_{ns}_member_summary", f"rm_{ns}_licenses", f"rm_{ns}_title_year_counts"


def table_ddl(keyspace: str, ns: str) -> list[str]:
    """CREATE TABLE IF NOT EXISTS statements of a namespace (also the text of migration 0003 for v1)."""
    summary, licenses, counts = table_names(ns)
    return [
        f"""CREATE TABLE IF NOT EXISTS {keyspace}.{summary} (
  member_id text,
  seq bigint,
  plan_id text,
  device_limit int,
  downloads_per_device int,
  monthly_limit int,
  clock bigint,
  state text,
  PRIMARY KEY (member_id)
)""",
        f"""CREATE TABLE IF NOT EXISTS {keyspace}.{licenses} (
  member_id text,
  license_id text,
  device_id text,
  title_id text,
  studio_id text,
  expires_at bigint,
  renewals int,
  max_renewals int,
  title_yearly_limit int,
  studio_concurrent_limit int,
  released boolean,
  seq bigint,
  PRIMARY KEY ((member_id), license_id)
)""",
        f"""CREATE TABLE IF NOT EXISTS {keyspace}.{counts} (
  member_id text,
  title_id text,
  year int,
  count int,
  seq bigint,
  PRIMARY KEY ((member_id), title_id, year)
)""",
    ]


def ensure_tables(session, keyspace: str, ns: str) -> None:
    """Create the namespace's tables when missing (synchronous DDL; run it once, before projecting)."""
    for statement in table_ddl(keyspace, ns):
        session.execute(statement, timeout=60)


def encode_state(state: MemberState) -> str:
    """The summary's ``state`` column: the same JSON as the Redis view (no processed event ids)."""
    return json.dumps(state_to_dict(state, include_processed=False), separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class MemberReadModel:
    """Everything the Cassandra read models hold for one member."""

    member_id: str
    seq: int
    plan: Plan
    clock: int
    state: MemberState  # decoded from the summary's JSON
    licenses: dict[str, License] = field(default_factory=dict)  # from the licenses table
    license_seqs: dict[str, int] = field(default_factory=dict)  # seq that last changed each license row
    title_year_counts: dict[tuple[str, int], int] = field(default_factory=dict)  # from the counts table

    def rows_state(self) -> MemberState:
        """A member state built from the table rows (plan and counts columns, license rows); month
        counts, which have no table of their own, come from the JSON. Equal to `state` when the
        tables are consistent."""
        return MemberState(
            member_id=self.member_id, plan=self.plan, licenses=dict(self.licenses), clock=self.clock,
            seq=self.seq, title_year_downloads=dict(self.title_year_counts),
            month_downloads=dict(self.state.month_downloads), processed=ProcessedIds(),
            rejections_since_seq=self.state.rejections_since_seq,
        )


class CassandraReadModels:
    """Async, seq-fenced writer and reader of one namespace's read models."""

    def __init__(self, session, keyspace: str, ns: str):
        self.session = session
        self.keyspace = keyspace
        self.ns = ns
        summary, licenses, counts = (f"{keyspace}.{t}" for t in table_names(ns))
        self._put_summary = session.prepare(
            f"INSERT INTO {summary} (member_id, seq, plan_id, device_limit, downloads_per_device, monthly_limit, "
            "clock, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
        self._put_license = session.prepare(
            f"INSERT INTO {licenses} (member_id, license_id, device_id, title_id, studio_id, expires_at, renewals, "
            "max_renewals, title_yearly_limit, studio_concurrent_limit, released, seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
        self._put_count = session.prepare(
            f"INSERT INTO {counts} (member_id, title_id, year, count, seq) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?")
        self._get_summary = session.prepare(
            f"SELECT member_id, seq, plan_id, device_limit, downloads_per_device, monthly_limit, clock, state "
            f"FROM {summary} WHERE member_id = ?")
        self._get_licenses = session.prepare(
            f"SELECT license_id, device_id, title_id, studio_id, expires_at, renewals, max_renewals, "
            f"title_yearly_limit, studio_concurrent_limit, released, seq FROM {licenses} WHERE member_id = ?")
        self._get_counts = session.prepare(
            f"SELECT title_id, year, count FROM {counts} WHERE member_id = ?")

    # --- writing ------------------------------------------------------------------------

    async def write_many(self, states: Iterable[MemberState],
                         previous: Mapping[str, MemberState] | None = None) -> int:
        """Write each member's read models at its ``seq``; returns the number of members written.

        ``previous`` (optional) is, per member, a state these tables are known to hold already: only
        license and count rows that differ from it are written (without it, every row of the
        member). Passing an older state than the stored one is harmless, a newer one is not.
        """
        previous = previous or {}
        states = [s for s in states if s.seq > 0]
        await asyncio.gather(*(self._write_member(s, previous.get(s.member_id)) for s in states))
        return len(states)

    async def _write_member(self, state: MemberState, before: MemberState | None) -> None:
        rows = self._row_statements(state, before)
        chunks = [rows[i:i + ROWS_PER_BATCH] for i in range(0, len(rows), ROWS_PER_BATCH)]
        await asyncio.gather(*(self._execute_rows(chunk) for chunk in chunks))
        plan = state.plan
        await execute(self.session, self._put_summary, (
            state.member_id, state.seq, plan.plan_id, plan.device_limit, plan.downloads_per_device,
            plan.monthly_limit, state.clock, encode_state(state), state.seq))

    def _row_statements(self, state: MemberState, before: MemberState | None) -> list[tuple]:
        seq, member_id = state.seq, state.member_id
        rows = []
        for license_id, lic in sorted(state.licenses.items()):
            if before is not None and before.licenses.get(license_id) == lic:
                continue
            rows.append((self._put_license, (
                member_id, license_id, lic.device_id, lic.title_id, lic.studio_id, lic.expires_at, lic.renewals,
                lic.max_renewals, lic.title_yearly_limit, lic.studio_concurrent_limit, lic.released, seq, seq)))
        for (title_id, year), count in sorted(state.title_year_downloads.items()):
            if before is not None and before.title_year_downloads.get((title_id, year)) == count:
                continue
            rows.append((self._put_count, (member_id, title_id, year, count, seq, seq)))
        return rows

    async def _execute_rows(self, rows: list[tuple]) -> None:
        if len(rows) == 1:
            statement, params = rows[0]
            await execute(self.session, statement, params)
            return
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)  # one partition: applied atomically
        for statement, params in rows:
            batch.add(statement, params)
        await execute(self.session, batch)

    # --- reading ------------------------------------------------------------------------

    async def read_states(self, member_ids: list[str]) -> dict[str, MemberState]:
        """The JSON view state of each member's summary (members without one are left out)."""
        rows = await asyncio.gather(*(execute(self.session, self._get_summary, (m,)) for m in member_ids))
        return {m: state_from_dict(json.loads(r[0].state)) for m, r in zip(member_ids, rows) if r}

    async def read_member(self, member_id: str) -> MemberReadModel | None:
        summary, licenses, counts = await asyncio.gather(
            execute(self.session, self._get_summary, (member_id,)),
            execute(self.session, self._get_licenses, (member_id,)),
            execute(self.session, self._get_counts, (member_id,)),
        )
        if not summary:
            return None
        s = summary[0]
        return MemberReadModel(
            member_id=member_id,
            seq=s.seq,
            plan=Plan(s.plan_id, s.device_limit, s.downloads_per_device, s.monthly_limit),
            clock=s.clock,
            state=state_from_dict(json.loads(s.state)),
            licenses={r.license_id: License(
                license_id=r.license_id, device_id=r.device_id, title_id=r.title_id, studio_id=r.studio_id,
                expires_at=r.expires_at, renewals=r.renewals, max_renewals=r.max_renewals,
                title_yearly_limit=r.title_yearly_limit, studio_concurrent_limit=r.studio_concurrent_limit,
                released=r.released) for r in licenses},
            license_seqs={r.license_id: r.seq for r in licenses},
            title_year_counts={(r.title_id, r.year): r.count for r in counts},
        )
