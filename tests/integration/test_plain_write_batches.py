"""The plain writes of a member-heavy micro-batch go in unlogged batches of at most
PARTITIONS_PER_BATCH partitions (app/adapters/cassandra/batches.py says why: on a node with a synced
commit log a batch's partitions are applied one after another, each waiting for its sync)."""
from __future__ import annotations

import asyncio
import uuid

from app.adapters.cassandra.batches import PARTITIONS_PER_BATCH
from app.adapters.cassandra.event_store import CassandraEventStore
from app.adapters.cassandra.namespaces import CassandraNamespaces
from app.adapters.cassandra.read_models import CassandraReadModels
from tests.support.domain_builders import T0, event, plan
from tests.support.histories import decided
from tests.support.recording_session import RecordingSession

MEMBERS = 3 * PARTITIONS_PER_BATCH + 1


def statements_per_batch(queries: list[str], table: str) -> list[int]:
    return [q.count(table) for q in queries if table in q]


def test_a_batch_of_lookup_entries_touches_at_most_partitions_per_batch_members(cassandra, test_keyspace):
    session = RecordingSession(cassandra)
    store = CassandraEventStore(session, test_keyspace)
    members = [f"m-{uuid.uuid4().hex[:12]}" for _ in range(MEMBERS)]
    decisions = {m: decided([event(plan(), at=T0, member=m, event_id=f"{m}-0")], m)[1] for m in members}
    asyncio.run(store.append(decisions, dict.fromkeys(members, (0, 0))))
    sizes = statements_per_batch(session.queries, "member_event_ids")
    assert sum(sizes) == MEMBERS and max(sizes) <= PARTITIONS_PER_BATCH, sizes
    assert all(asyncio.run(store.find(m, f"{m}-0")) == decisions[m][0] for m in members)


def test_a_batch_of_read_model_summaries_touches_at_most_partitions_per_batch_members(cassandra, test_keyspace):
    ns = f"b{uuid.uuid4().hex[:8]}"
    asyncio.run(CassandraNamespaces(cassandra, test_keyspace).create(ns))
    session = RecordingSession(cassandra)
    models = CassandraReadModels(session, test_keyspace, ns)
    states = [decided([event(plan(), at=T0, member=f"m-{i}", event_id=f"e-{i}")], f"m-{i}")[2] for i in range(MEMBERS)]
    assert asyncio.run(models.write_many(states)) == MEMBERS
    sizes = statements_per_batch(session.queries, "member_summary")
    assert sum(sizes) == MEMBERS and max(sizes) <= PARTITIONS_PER_BATCH, sizes
    stored = asyncio.run(models.read_states([s.member_id for s in states]))
    assert {m: (s.seq, s.plan) for m, s in stored.items()} == {s.member_id: (s.seq, s.plan) for s in states}
