"""The event store contract: every implementation (Cassandra, in-memory) passes the same tests."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from app.adapters.cassandra.event_store import CassandraEventStore
from app.adapters.cassandra.progress_store import CassandraProgressStore
from app.adapters.memory.event_store import InMemoryEventStore, InMemoryProgressStore
from app.domain.state import MemberState
from app.domain.history import REJECTED, StoredDecision
from tests.histories import decided
from tests.unit.domain_builders import DAY, T0, acquire, event, plan, release, renew

@pytest.fixture(params=["memory", "cassandra"])
def store(request):
    if request.param == "memory":
        return InMemoryEventStore()
    session = request.getfixturevalue("cassandra")
    return CassandraEventStore(session, request.getfixturevalue("test_keyspace"))


@pytest.fixture(params=["memory", "cassandra"])
def progress(request):
    if request.param == "memory":
        return InMemoryProgressStore()
    return CassandraProgressStore(request.getfixturevalue("cassandra"), request.getfixturevalue("test_keyspace"))


def history(member: str, payloads) -> tuple[list[StoredDecision], MemberState]:
    """Decide payloads in order; returns the decisions as the decider stores them and the final state."""
    events = [event(p, at=T0 + i * 1000, member=member, event_id=f"{member}-{i}") for i, p in enumerate(payloads)]
    _, decisions, state = decided(events, member)
    return decisions, state


PAYLOADS = [plan(device_limit=2), acquire("l1", device="d1"), acquire("l2", device="d2"),
            acquire("l3", device="d3"),  # DEVICE_LIMIT
            renew("l1", expires=T0 + 90 * DAY), release("l2"), acquire("l4", device="d3")]


def run(coro):
    return asyncio.run(coro)


def member() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def test_load_of_an_unknown_member_is_the_empty_state(store):
    m = member()
    assert run(store.load(m)) == MemberState.empty(m)


def test_loading_gives_the_state_of_deciding_step_by_step(store):
    m = member()
    decisions, expected = history(m, PAYLOADS)
    assert run(store.append({m: decisions})) == []
    loaded = run(store.load(m))
    assert loaded == expected
    assert loaded.seq == 6 and loaded.rejections_since_seq == 0
    assert list(loaded.processed) == list(expected.processed)


def test_an_append_at_a_taken_position_is_refused_and_writes_nothing(store):
    m = member()
    decisions, _ = history(m, PAYLOADS[:3])
    assert run(store.append({m: decisions})) == []
    stale = history(m, [plan(device_limit=4), acquire("other")])[0]  # seq 1 and 2 again
    other = member()
    other_decisions, other_state = history(other, PAYLOADS[:2])
    assert run(store.append({m: stale, other: other_decisions})) == [m]
    assert run(store.load(m)) == history(m, PAYLOADS[:3])[1]
    assert run(store.load(other)) == other_state


def test_loading_from_a_snapshot_equals_folding_every_event(store):
    m = member()
    decisions, expected = history(m, PAYLOADS)
    run(store.append({m: decisions[:3]}))
    snapshot_state = history(m, PAYLOADS[:3])[1]
    run(store.save_snapshot(snapshot_state))
    run(store.append({m: decisions[3:]}))
    assert run(store.load(m)) == expected


def test_accepted_between_and_find(store):
    m = member()
    decisions, _ = history(m, PAYLOADS)
    run(store.append({m: decisions}))
    between = run(store.accepted_between(m, 1, 3))
    assert [r.seq for r in between] == [2, 3]
    rejected = next(d for d in decisions if d.kind == REJECTED)
    found = run(store.find(m, rejected.event.event_id))
    assert found == rejected
    assert run(store.find(m, "no-such-event")) is None
    assert m in run(store.member_ids())


def test_progress_round_trip(progress):
    topic = f"t-{uuid.uuid4().hex[:8]}"
    assert run(progress.load(topic)) == {}
    run(progress.save(topic, {0: 10, 3: 7}))
    run(progress.save(topic, {3: 9}))
    assert run(progress.load(topic)) == {0: 10, 3: 9}


def test_a_snapshot_the_code_cannot_read_is_skipped_and_the_state_rebuilt_from_events(cassandra, test_keyspace):
    store = CassandraEventStore(cassandra, test_keyspace)
    m = member()
    decisions, expected = history(m, PAYLOADS)
    run(store.append({m: decisions}))
    cassandra.execute(
        f"INSERT INTO {test_keyspace}.member_snapshots (member_id, seq, sub, schema_version, state) "
        "VALUES (%s, %s, %s, %s, %s)",
        (m, 5, 0, "MemberSnapshot.v99", b"\xc3\x01" + b"\xff" * 8 + b"future bytes"))
    assert run(store.load(m)) == expected
