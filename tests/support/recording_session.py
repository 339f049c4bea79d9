"""A cassandra-driver session wrapper for tests that check which statements an adapter sends."""
from __future__ import annotations


class RecordingSession:
    """A cassandra-driver session that records the CQL of every statement it runs."""

    def __init__(self, session):
        self.session = session
        self.queries: list[str] = []  # a batch: the CQL of its statements, joined by " ; "
        self._prepared: dict[bytes, str] = {}

    def prepare(self, query):
        prepared = self.session.prepare(query)
        self._prepared[prepared.query_id] = prepared.query_string
        return prepared

    def execute_async(self, statement, params=None, timeout=None):
        inner = getattr(statement, "_statements_and_parameters", None)
        if inner is not None:
            self.queries.append(" ; ".join(self._prepared.get(s, "?") if p else str(s) for p, s, _ in inner))
        else:
            self.queries.append(getattr(statement, "query_string", None) or str(statement))
        return self.session.execute_async(statement, params, timeout=timeout)
