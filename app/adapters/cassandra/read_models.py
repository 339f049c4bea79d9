"""The Cassandra read model of a projection namespace: one summary row per member.

Table ``rm_{ns}_member_summary`` (``ns`` is the projection namespace, e.g. ``v1``; migration 0003
creates the ``v1`` one, the replay creates new namespaces through `CassandraNamespaces`): ``seq``,
the plan, the member clock and ``state``, the JSON view state (the same JSON as the Redis view).

Every write is fenced by ``seq``: each INSERT carries ``USING TIMESTAMP <seq>``, so Cassandra's
last-write-wins keeps, cell by cell, the value of the highest seq ever written; a redelivered or
replayed entry at or below the applied seq can never overwrite a newer one, whatever the order in
which writers arrive. Never write the table without ``USING TIMESTAMP <seq>`` (a wall-clock
timestamp, in microseconds, would win over every later seq) and never DELETE rows from it (a
tombstone at a wall-clock timestamp would shadow them for ever): rebuild into a new namespace.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

from cassandra.query import BatchStatement, BatchType

from app.adapters.cassandra.aio import execute
from app.adapters.cassandra.batches import PARTITIONS_PER_BATCH
from app.adapters.view_json import decode_view, encode_view
from app.domain.state import MemberState

# Cassandra table names are at most 48 characters: "rm_" + ns + "_member_summary" leaves 31; 28
# keeps the names of namespaces made before the other read-model tables were dropped valid.
NAMESPACE_PATTERN = re.compile(r"^[a-z0-9_]{1,28}$")

READ_CHUNK = 100  # members per IN read of the summaries
# An unlogged batch of summaries holds at most this much state JSON (and PARTITIONS_PER_BATCH rows):
# under Cassandra's default batch_size_fail_threshold (50 KiB), over its warn threshold (5 KiB,
# which only logs; the local stack sets 64 KiB).
WRITE_BATCH_BYTES = 24 * 1024


def check_namespace(ns: str) -> str:
    if not NAMESPACE_PATTERN.match(ns):
        raise ValueError(f"projection namespace {ns!r} is not usable in Cassandra table names "
                         f"(lower-case letters, digits and _, at most 28 characters)")
    return ns


def summary_table(ns: str) -> str:
    return f"rm_{check_namespace(ns)}_member_summary"


def table_ddl(keyspace: str, ns: str) -> str:
    """The CREATE TABLE IF NOT EXISTS of a namespace (also the text of migration 0003 for v1)."""
    return f"""CREATE TABLE IF NOT EXISTS {keyspace}.{summary_table(ns)} (
  member_id text,
  seq bigint,
  plan_id text,
  device_limit int,
  downloads_per_device int,
  monthly_limit int,
  clock bigint,
  state text,
  PRIMARY KEY (member_id)
)"""


class CassandraReadModels:
    """Async, seq-fenced writer and reader of one namespace's member summaries."""

    def __init__(self, session, keyspace: str, ns: str):
        self.session = session
        self.keyspace = keyspace
        self.ns = ns
        summary = f"{keyspace}.{summary_table(ns)}"
        self._put_summary = session.prepare(
            f"INSERT INTO {summary} (member_id, seq, plan_id, device_limit, downloads_per_device, monthly_limit, "
            "clock, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
        self._get_summaries = session.prepare(f"SELECT member_id, state FROM {summary} WHERE member_id IN ?")

    async def write_many(self, states: Iterable[MemberState]) -> int:
        """Write each member's summary at its ``seq``; returns the number of members written.

        The INSERTs go in unlogged batches of up to WRITE_BATCH_BYTES of state JSON and
        PARTITIONS_PER_BATCH members, all sent together (one statement for several members: the
        worker's cost is per statement). Each INSERT keeps its own ``USING
        TIMESTAMP <seq>``, so the fence is the same as one statement per member; a batch that fails
        may be partly applied, which the fence makes harmless (the caller writes it again)."""
        states = [s for s in states if s.seq > 0]
        batches: list[BatchStatement] = []
        batch, size = None, 0
        for state in states:
            view = encode_view(state)
            if batch is None or size + len(view) > WRITE_BATCH_BYTES or len(batch) >= PARTITIONS_PER_BATCH:
                batch, size = BatchStatement(batch_type=BatchType.UNLOGGED), 0
                batches.append(batch)
            plan = state.plan
            batch.add(self._put_summary, (
                state.member_id, state.seq, plan.plan_id, plan.device_limit, plan.downloads_per_device,
                plan.monthly_limit, state.clock, view, state.seq))
            size += len(view)
        await asyncio.gather(*(execute(self.session, b) for b in batches))
        return len(states)

    async def read_states(self, member_ids: list[str]) -> dict[str, MemberState]:
        """The JSON view state of each member's summary (members without one are left out): one IN
        read per READ_CHUNK members."""
        wanted = list(dict.fromkeys(member_ids))
        chunks = [wanted[i:i + READ_CHUNK] for i in range(0, len(wanted), READ_CHUNK)]
        answers = await asyncio.gather(*(execute(self.session, self._get_summaries, (c,)) for c in chunks))
        return {r.member_id: decode_view(r.state) for rows in answers for r in rows}
