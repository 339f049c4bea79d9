"""The copy of the per-member event store (member_events, migrations 0002-0007) into its buckets (0008).

`ledger migrate` runs it as part of migration 0008, after the table exists and before the migration
is recorded as applied: a run that stops part way is redone by the next `ledger migrate`. Per member
of member_events, in this order: the lookup entries of every row (a partition written before 0006
has none), the rows in the member's bucket, then its head row (``IF NOT EXISTS``). Every write but
the head is a plain idempotent INSERT, and a member whose head row exists is complete and skipped,
so a copy redone from the start writes each member once more at most, and never moves a head that a
worker of the new code has moved since.

Stop every worker of the old code first: a decision it appends to member_events after its member
was copied is not in the buckets. member_events itself is left as it is (unread), for a rollback.
"""
from __future__ import annotations

from cassandra.query import BatchStatement, BatchType, SimpleStatement

from app.adapters.cassandra.event_store import BATCH_BYTES, COLUMNS, TABLE, bucket_of, event_buckets, row_bytes

TIMEOUT_S = 60.0


def copy_member_events(session, keyspace: str, echo=print, page_size: int = 500) -> int:
    """Copies every member of member_events not yet in its bucket; returns how many it copied."""
    ks, buckets = keyspace, event_buckets(session, keyspace)
    head = session.prepare(f"SELECT head_seq FROM {ks}.{TABLE} WHERE bucket = ? AND member_id = ? "
                           "AND seq = -1 AND sub = 0")
    rows_of = session.prepare(f"SELECT {COLUMNS} FROM {ks}.member_events WHERE member_id = ?")
    insert = session.prepare(f"INSERT INTO {ks}.{TABLE} (bucket, {COLUMNS}) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    index = session.prepare(f"INSERT INTO {ks}.member_event_ids (member_id, event_id, seq, sub) VALUES (?, ?, ?, ?)")
    first_head = session.prepare(f"INSERT INTO {ks}.{TABLE} (bucket, member_id, seq, sub, head_seq, head_sub) "
                                 "VALUES (?, ?, -1, 0, ?, ?) IF NOT EXISTS")
    members = SimpleStatement(f"SELECT DISTINCT member_id FROM {ks}.member_events", fetch_size=page_size)
    copied = 0
    for found in session.execute(members, timeout=TIMEOUT_S):
        member = found.member_id
        bucket = bucket_of(member, buckets)
        if session.execute(head, (bucket, member), timeout=TIMEOUT_S).one() is not None:
            continue
        rows = [r for r in session.execute(rows_of, (member,), timeout=TIMEOUT_S) if r.seq is not None]
        if not rows:
            continue  # a partition holding only a head: nothing was ever decided for it
        _in_batches(session, index, [(member, r.event_id, r.seq, r.sub) for r in rows])
        _in_batches(session, insert, [(bucket, *r) for r in rows])
        session.execute(first_head, (bucket, member, rows[-1].seq, rows[-1].sub), timeout=TIMEOUT_S)
        copied += 1
        if copied % 10_000 == 0:
            echo(f"  member_events copied into buckets: {copied} members")
    if copied:
        echo(f"  member_events copied into buckets: {copied} members")
    return copied


def _in_batches(session, statement, values: list[tuple]) -> None:
    """Unlogged batches within one partition, each under BATCH_BYTES."""
    batch, size = BatchStatement(batch_type=BatchType.UNLOGGED), 0
    for v in values:
        if size and size + row_bytes(v) > BATCH_BYTES:
            session.execute(batch, timeout=TIMEOUT_S)
            batch, size = BatchStatement(batch_type=BatchType.UNLOGGED), 0
        batch.add(statement, v)
        size += row_bytes(v)
    if size:
        session.execute(batch, timeout=TIMEOUT_S)
