"""Projection namespaces in Cassandra as a whole (tables ``rm_{ns}_*``, see
`app.adapters.cassandra.read_models`): which exist, whether they hold rows, their members, dropping."""
from __future__ import annotations

import re

from app.adapters.cassandra.aio import execute
from app.adapters.cassandra.read_models import table_names

DDL_TIMEOUT_S = 120
_SUMMARY_TABLE = re.compile(r"^rm_([a-z0-9_]{1,28})_member_summary$")


def _tables(session, keyspace: str) -> set[str]:
    rows = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,), timeout=30)
    return {r.table_name for r in rows}


def namespaces_with_tables(session, keyspace: str) -> set[str]:
    return {m.group(1) for t in _tables(session, keyspace) if (m := _SUMMARY_TABLE.match(t))}


def holds_rows(session, keyspace: str, ns: str) -> bool:
    if ns not in namespaces_with_tables(session, keyspace):
        return False
    summary, _, _ = table_names(ns)
    return bool(list(session.execute(f"SELECT member_id FROM {keyspace}.{summary} LIMIT 1", timeout=30)))


async def read_model_members(session, keyspace: str, ns: str) -> set[str]:
    """Every member with a summary row (a full scan of the summary table, paged)."""
    summary, _, _ = table_names(ns)
    return {r.member_id for r in await execute(session, f"SELECT member_id FROM {keyspace}.{summary}")}


def drop_tables(session, keyspace: str, ns: str) -> list[str]:
    dropped = []
    present = _tables(session, keyspace)
    for table in table_names(ns):
        if table in present:
            session.execute(f"DROP TABLE IF EXISTS {keyspace}.{table}", timeout=DDL_TIMEOUT_S)
            dropped.append(table)
    return dropped


def transient_errors() -> tuple[type[BaseException], ...]:
    """Driver errors worth retrying for idempotent work (fenced writes, reads): an overloaded or
    briefly unreachable node, a timeout."""
    from cassandra import OperationTimedOut, Timeout, Unavailable
    from cassandra.cluster import NoHostAvailable

    return (NoHostAvailable, OperationTimedOut, Timeout, Unavailable)
