"""Counting every statement a process sends to Cassandra, by kind (the bench's statements per event).

`CountingSession(session, path)` stands in for a cassandra-driver session: ``prepare`` remembers
each prepared statement's kind, ``execute_async`` counts one statement per call (a batch is one
statement, named after the kinds it holds) and every other attribute is the session's own. A
daemon thread writes the counts as JSON to ``path`` every ``interval_s`` (and `flush` writes them
at once), so another process can read them while this one runs. Used only when
LEDGER_COUNT_STATEMENTS_TO is set (`ledger bench` sets it for its workers): the count is a dict
update per statement.

A kind is the verb and the table, ``LWT`` when the statement has a condition: ``SELECT
member_snapshots``, ``INSERT member_event_ids``, ``BATCH[INSERT member_events_by_bucket + INSERT
member_events_by_bucket LWT + UPDATE member_events_by_bucket LWT]`` (the conditional append of a bucket).
"""
from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from pathlib import Path

_VERB_TABLE = re.compile(
    r"^\s*(SELECT\b.*?\bFROM|INSERT\s+INTO|UPDATE|DELETE\b.*?\bFROM)\s+(?:\w+\.)?(\w+)", re.I | re.S)
_CONDITION = re.compile(r"\bIF\s+(NOT\s+EXISTS|\w+\s*(=|!=|<|>|\bIN\b)|EXISTS)", re.I)


def kind_of(cql: str) -> str:
    """``SELECT member_snapshots`` / ``UPDATE member_events_by_bucket LWT`` / ... of a CQL text."""
    m = _VERB_TABLE.match(cql)
    if m is None:
        return " ".join(cql.split()[:2]).upper() or "?"
    verb = m.group(1).split()[0].upper()
    table = re.sub(r"^rm_\w+?_member_summary$", "rm_*_member_summary", m.group(2))
    lwt = " LWT" if _CONDITION.search(cql) else ""
    return f"{verb} {table}{lwt}"


class CountingSession:
    def __init__(self, session, path: Path | str, interval_s: float = 0.5):
        self._session = session
        self._path = Path(path)
        self._kinds: dict[bytes, str] = {}  # prepared statement id -> kind
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._writer, args=(interval_s,), name="statement-counts",
                                        daemon=True)
        self._thread.start()

    def __getattr__(self, name):
        return getattr(self._session, name)

    def prepare(self, query, *args, **kwargs):
        prepared = self._session.prepare(query, *args, **kwargs)
        self._kinds[prepared.query_id] = kind_of(prepared.query_string)
        return prepared

    def execute_async(self, statement, *args, **kwargs):
        self._count(statement)
        return self._session.execute_async(statement, *args, **kwargs)

    def execute(self, statement, *args, **kwargs):
        self._count(statement)
        return self._session.execute(statement, *args, **kwargs)

    def _count(self, statement) -> None:
        kind = self._kind(statement)
        with self._lock:
            self.counts[kind] += 1

    def _kind(self, statement) -> str:
        inner = getattr(statement, "_statements_and_parameters", None)
        if inner is not None:  # a BatchStatement: (is_prepared, statement or query id, values)
            kinds = sorted({self._kinds.get(s, "?") if prepared else kind_of(str(s)) for prepared, s, _ in inner})
            return f"BATCH[{' + '.join(kinds)}]"
        prepared = getattr(statement, "prepared_statement", None)  # a BoundStatement
        if prepared is not None:
            return self._kinds.get(prepared.query_id) or kind_of(prepared.query_string)
        if hasattr(statement, "query_id"):  # a PreparedStatement executed with parameters
            return self._kinds.get(statement.query_id) or kind_of(statement.query_string)
        return kind_of(getattr(statement, "query_string", None) or str(statement))

    def flush(self) -> None:
        with self._lock:
            data = {"pid": os.getpid(), "statements": sum(self.counts.values()), "by_kind": dict(self.counts)}
        tmp = self._path.with_suffix(self._path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        tmp.replace(self._path)

    def _writer(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.flush()
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        try:
            self.flush()
        except OSError:
            pass
