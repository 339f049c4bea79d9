"""Projection namespaces in Cassandra as a whole (tables ``rm_{ns}_*``, see
`app.adapters.cassandra.read_models`): the NamespaceStore of the Cassandra read models."""
from __future__ import annotations

import asyncio
import re

from app.adapters.cassandra.aio import execute
from app.adapters.cassandra.read_models import check_namespace, summary_table, table_ddl

DDL_TIMEOUT_S = 120
_SUMMARY_TABLE = re.compile(r"^rm_([a-z0-9_]{1,28})_member_summary$")


class CassandraNamespaces:
    name = "cassandra"

    def __init__(self, session, keyspace: str):
        self.session = session
        self.keyspace = keyspace

    def check(self, ns: str) -> None:
        check_namespace(ns)

    def _tables(self) -> set[str]:
        rows = self.session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (self.keyspace,), timeout=30)
        return {r.table_name for r in rows}

    async def namespaces(self) -> set[str]:
        tables = await asyncio.to_thread(self._tables)
        return {m.group(1) for t in tables if (m := _SUMMARY_TABLE.match(t))}

    async def holds_data(self, ns: str) -> bool:
        if ns not in await self.namespaces():
            return False
        rows = await execute(self.session, f"SELECT member_id FROM {self.keyspace}.{summary_table(ns)} LIMIT 1")
        return bool(list(rows))

    async def members(self, ns: str) -> set[str]:
        """Every member with a summary row (a full scan of the summary table, paged)."""
        if ns not in await self.namespaces():
            return set()
        return {r.member_id for r in await execute(self.session, f"SELECT member_id FROM {self.keyspace}.{summary_table(ns)}")}

    async def create(self, ns: str) -> None:
        await asyncio.to_thread(self.session.execute, table_ddl(self.keyspace, ns), timeout=DDL_TIMEOUT_S)

    async def drop(self, ns: str) -> int:
        """DROP every table of the namespace (the summary, and the tables older versions wrote)."""
        prefix = f"rm_{check_namespace(ns)}_"
        doomed = sorted(t for t in await asyncio.to_thread(self._tables) if t.startswith(prefix))
        for table in doomed:
            await asyncio.to_thread(self.session.execute, f"DROP TABLE IF EXISTS {self.keyspace}.{table}",
                                    timeout=DDL_TIMEOUT_S)
        return len(doomed)


def transient_errors() -> tuple[type[BaseException], ...]:
    """Driver errors worth retrying for idempotent work (fenced writes, reads): an overloaded or
    briefly unreachable node, a timeout."""
    from cassandra import OperationTimedOut, Timeout, Unavailable
    from cassandra.cluster import NoHostAvailable

    return (NoHostAvailable, OperationTimedOut, Timeout, Unavailable)
