"""What an append leaves in Cassandra's own Paxos table, `system.paxos`.

Every append is a Paxos round on a bucket's partition, and Cassandra keeps the round's state (the
promise, the proposal and the most recent commit, whose update holds the appended rows) for the
table's gc_grace_seconds, but at least 3 hours. With the default 10 days, system.paxos holds every
partition appended to in the last 10 days and is rewritten by every compaction of it; the event
store's tables ask for the 3 hours (migrations 0007 and 0008).
"""
from __future__ import annotations

import asyncio
import uuid

import pytest

from app.adapters.cassandra.event_store import CassandraEventStore
from tests.support.domain_builders import T0, acquire, event, plan
from tests.support.histories import decided

pytestmark = pytest.mark.stack

THREE_HOURS_S = 3 * 3600


def test_the_paxos_state_of_an_append_expires_after_three_hours_not_ten_days(cassandra, test_keyspace):
    m = f"m-{uuid.uuid4().hex[:12]}"
    events = [event(p, at=T0 + i * 1000, member=m, event_id=f"{m}-{i}") for i, p in enumerate([plan(), acquire("l1")])]
    _, decisions, _ = decided(events, m)
    store = CassandraEventStore(cassandra, test_keyspace)
    assert asyncio.run(store.append({m: decisions}, {m: (0, 0)})) == []

    table_id = cassandra.execute(
        "SELECT id FROM system_schema.tables WHERE keyspace_name = %s AND table_name = 'member_events_by_bucket'",
        (test_keyspace,)).one().id
    row = cassandra.execute("SELECT TTL(most_recent_commit) AS ttl FROM system.paxos WHERE row_key = %s AND cf_id = %s",
                            (store.bucket(m).to_bytes(4, "big", signed=True), table_id)).one()
    assert row is not None and row.ttl is not None, "the append left no Paxos commit for the bucket"
    assert 0 < row.ttl <= THREE_HOURS_S, f"the bucket's Paxos state lives {row.ttl} s"
