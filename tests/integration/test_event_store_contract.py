"""The event store contract: every implementation (Cassandra, in-memory) passes the same tests."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from app.adapters.cassandra.bucket_copy import copy_member_events
from app.adapters.cassandra.event_store import BATCH_BYTES, COLUMNS, CassandraEventStore, row_bytes
from app.adapters.cassandra.progress_store import CassandraProgressStore
from app.adapters.memory.event_store import InMemoryEventStore, InMemoryProgressStore
from app.domain.decide import step
from app.domain.history import REJECTED, Source, StoredDecision, to_stored
from app.domain.state import MemberState
from app.service.ports import LoadedState
from tests.support.domain_builders import DAY, T0, acquire, event, plan, release, renew
from tests.support.histories import decided
from tests.support.recording_session import RecordingSession


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
    assert run(store.append({m: decisions}, {m: (0, 0)})) == []
    loaded = run(store.load(m))
    assert loaded == expected
    assert loaded.seq == 6 and loaded.rejections_since_seq == 0
    assert list(loaded.processed) == list(expected.processed)


def test_an_append_at_a_taken_position_is_refused_and_writes_nothing(store):
    m = member()
    decisions, _ = history(m, PAYLOADS[:3])
    assert run(store.append({m: decisions}, {m: (0, 0)})) == []
    stale = history(m, [plan(device_limit=4), acquire("other")])[0]  # seq 1 and 2 again
    other = member()
    other_decisions, other_state = history(other, PAYLOADS[:2])
    assert run(store.append({m: stale, other: other_decisions}, {m: (0, 0), other: (0, 0)})) == [m]
    assert run(store.load(m)) == history(m, PAYLOADS[:3])[1]
    assert run(store.load(other)) == other_state


def test_loading_from_a_snapshot_equals_folding_every_event(store):
    m = member()
    decisions, expected = history(m, PAYLOADS)
    run(store.append({m: decisions[:3]}, {m: (0, 0)}))
    snapshot_state = history(m, PAYLOADS[:3])[1]
    run(store.save_snapshot(snapshot_state))
    run(store.append({m: decisions[3:]}, {m: decisions[2].position}))
    assert run(store.load(m)) == expected


def test_only_the_newest_three_snapshots_are_kept(store):
    """Issue 10 item 12: a snapshot every N decided rows; a member keeps its newest three (a load
    reads three and skips an unreadable one), the older ones are deleted once the new one is written."""
    m = member()
    decisions, expected = history(m, PAYLOADS)
    run(store.append({m: decisions}, {m: (0, 0)}))
    prefixes = [history(m, PAYLOADS[:n])[1] for n in range(1, len(PAYLOADS) + 1)]
    positions = [s.position for s in prefixes]
    assert positions == [(1, 0), (2, 0), (3, 0), (3, 1), (4, 0), (5, 0), (6, 0)]
    for state in prefixes[:2]:
        run(store.save_snapshot(state))
    assert run(store.snapshot_positions(m)) == [(2, 0), (1, 0)]
    for state in prefixes[2:5]:
        run(store.save_snapshot(state))
    assert run(store.snapshot_positions(m)) == [(4, 0), (3, 1), (3, 0)]
    run(store.save_snapshot(prefixes[1]))  # a late writer's older snapshot goes as well
    assert run(store.snapshot_positions(m)) == [(4, 0), (3, 1), (3, 0)]
    run(store.save_snapshot(prefixes[4]))  # the same snapshot again changes nothing
    assert run(store.snapshot_positions(m)) == [(4, 0), (3, 1), (3, 0)]
    other = member()
    other_decisions, _ = history(other, PAYLOADS[:2])
    run(store.append({other: other_decisions}, {other: (0, 0)}))
    run(store.save_snapshot(history(other, PAYLOADS[:1])[1]))
    for state in prefixes[5:]:
        run(store.save_snapshot(state))
    assert run(store.snapshot_positions(m)) == [(6, 0), (5, 0), (4, 0)]
    assert run(store.snapshot_positions(other)) == [(1, 0)]  # another member's partition is untouched
    assert run(store.load(m)) == expected


def test_load_many_counts_the_rows_folded_after_the_snapshot(store):
    """The decider counts decided rows from there to know when a member is due for a snapshot."""
    m, fresh = member(), member()
    decisions, expected = history(m, PAYLOADS)
    run(store.append({m: decisions}, {m: (0, 0)}))
    loaded = run(store.load_many([m, fresh]))
    assert (loaded[m].state, loaded[m].rows_since_snapshot) == (expected, 7)
    assert (loaded[fresh].state, loaded[fresh].rows_since_snapshot) == (MemberState.empty(fresh), 0)
    run(store.save_snapshot(history(m, PAYLOADS[:3])[1]))  # (3, 0): (3, 1) and three accepted after it
    loaded = run(store.load_many([m]))
    assert (loaded[m].state, loaded[m].rows_since_snapshot) == (expected, 4)
    run(store.save_snapshot(expected))
    assert run(store.load_many([m]))[m].rows_since_snapshot == 0


def test_accepted_between_and_find(store):
    m = member()
    decisions, _ = history(m, PAYLOADS)
    run(store.append({m: decisions}, {m: (0, 0)}))
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
    run(store.append({m: decisions}, {m: (0, 0)}))
    cassandra.execute(
        f"INSERT INTO {test_keyspace}.member_snapshots (member_id, seq, sub, schema_version, state) "
        "VALUES (%s, %s, %s, %s, %s)",
        (m, 5, 0, "MemberSnapshot.v99", b"\xc3\x01" + b"\xff" * 8 + b"future bytes"))
    assert run(store.load(m)) == expected


def decide_from(state: MemberState, payloads, first: int) -> tuple[list[StoredDecision], MemberState]:
    """Decide payloads in order from ``state`` (a writer holding that state); event ids go on from ``first``."""
    m = state.member_id
    rows = []
    for i, p in enumerate(payloads, start=first):
        ev = event(p, at=T0 + i * 1000, member=m, event_id=f"{m}-{i}")
        decision, state = step(state, ev)
        rows += to_stored(decision, ev, state, Source("t", 0, i))
    return rows, state


def test_a_stale_writer_cannot_store_a_rejection_in_a_past_slot(store):
    """(1, 1) is free while the store holds (1, 0), (2, 0): a per-position condition would take it.
    Below the snapshot at (2, 0) that row is invisible to load, so the event would be decided again."""
    m = member()
    decisions, state = history(m, PAYLOADS[:2])  # (1, 0) plan, (2, 0) acquire l1
    assert run(store.append({m: decisions}, {m: (0, 0)})) == []
    run(store.save_snapshot(state))
    stale_state = history(m, PAYLOADS[:1])[1]  # what a zombie still holds: (1, 0)
    stale, _ = decide_from(stale_state, [release("nope")], first=9)  # UNKNOWN_LICENSE
    assert [d.position for d in stale] == [(1, 1)]
    assert run(store.append({m: stale}, {m: stale_state.position})) == [m]
    assert run(store.find(m, f"{m}-9")) is None
    assert run(store.load(m)) == state


def test_appends_follow_the_head_and_writers_from_the_same_head_race_for_it(store):
    m = member()
    decisions, state = history(m, PAYLOADS)
    head = (0, 0)
    for chunk in (decisions[:1], decisions[1:4], decisions[4:]):  # accepted, rejected, accepted again
        assert run(store.append({m: chunk}, {m: head})) == []
        head = chunk[-1].position
    assert run(store.load(m)) == state

    ours, our_state = decide_from(state, [acquire("l5", device="d1")], first=20)
    theirs, their_state = decide_from(state, [plan(device_limit=5)], first=30)
    assert ours[0].position == theirs[0].position == (7, 0)

    async def race():
        return await asyncio.gather(store.append({m: ours}, {m: head}), store.append({m: theirs}, {m: head}))

    results = run(race())
    assert sorted(map(len, results)) == [0, 1]  # exactly one writer lost
    winner = our_state if results[1] else their_state
    assert run(store.load(m)) == winner
    # The loser, reloaded, appends from the winner's head.
    again, final = decide_from(winner, [release("l4")], first=40)
    assert run(store.append({m: again}, {m: winner.position})) == []
    assert run(store.load(m)) == final


def test_an_append_that_does_not_continue_its_head_is_an_error(store):
    m = member()
    decisions, _ = history(m, PAYLOADS[:3])
    with pytest.raises(ValueError, match="does not follow"):
        run(store.append({m: decisions[1:]}, {m: (0, 0)}))
    assert run(store.load(m)) == MemberState.empty(m)


def old_layout_rows(cassandra, keyspace: str, member_id: str, decisions: list[StoredDecision], head: bool):
    """Rows as the code before migration 0008 wrote them into member_events (before 0005: no head)."""
    store = CassandraEventStore(cassandra, keyspace)
    insert = cassandra.prepare(f"INSERT INTO {keyspace}.member_events ({COLUMNS}) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    for d in decisions:
        cassandra.execute(insert, store.row(0, member_id, d)[1:])
    if head:
        cassandra.execute(f"UPDATE {keyspace}.member_events SET head_seq = %s, head_sub = %s WHERE member_id = %s",
                          (*decisions[-1].position, member_id))


def test_migration_0008_copies_member_events_into_the_buckets(cassandra, test_keyspace):
    """A member of before 0005 (no head, no lookup entries) and one of 0005-0007 (head in static
    columns): after the copy each loads, finds its old event ids, appends from its head and refuses a
    stale writer; a second copy writes nothing."""
    store = CassandraEventStore(cassandra, test_keyspace)
    old, recent = member(), member()
    old_decisions, old_state = history(old, PAYLOADS[:4])
    recent_decisions, recent_state = history(recent, PAYLOADS)
    old_layout_rows(cassandra, test_keyspace, old, old_decisions, head=False)
    old_layout_rows(cassandra, test_keyspace, recent, recent_decisions, head=True)
    assert run(store.load(old)) == MemberState.empty(old)  # the store reads the buckets only

    copied = copy_member_events(cassandra, test_keyspace, echo=lambda *_: None)
    assert copied >= 2
    assert copy_member_events(cassandra, test_keyspace, echo=lambda *_: None) == 0
    for m, decisions, state in ((old, old_decisions, old_state), (recent, recent_decisions, recent_state)):
        assert run(store.load(m)) == state
        assert run(store.find_many(m, [d.event.event_id for d in decisions])) == {d.event.event_id: d for d in decisions}
        assert run(store.page(m, None, 100)) == decisions
        assert m in run(store.member_ids())
    more, after = decide_from(old_state, [release("l1")], first=10)
    stale, _ = decide_from(old_layout_state := history(old, PAYLOADS[:2])[1], [release("nope")], first=20)
    assert run(store.append({old: stale}, {old: old_layout_state.position})) == [old]
    assert run(store.append({old: more}, {old: old_state.position})) == []
    assert run(store.load(old)) == after


def test_many_members_of_one_bucket_share_a_batch_and_a_stale_one_loses_alone(cassandra, test_keyspace):
    """One conditional batch per bucket: a stale member refuses the batch, is reported lost, and the
    other members of its bucket are stored by the next batch."""
    session = RecordingSession(cassandra)
    store = CassandraEventStore(session, test_keyspace)
    bucket = store.bucket(member())
    same = []
    while len(same) < 30:
        m = member()
        if store.bucket(m) == bucket:
            same.append(m)
    histories = {m: history(m, PAYLOADS[:3]) for m in same}
    session.queries.clear()
    assert run(store.append({m: h[0][:2] for m, h in histories.items()}, {m: (0, 0) for m in same})) == []
    assert sum(" IF " in q for q in session.queries) == 1  # one Paxos round for 30 members
    stale_member = same[7]
    stale, _ = decide_from(history(stale_member, PAYLOADS[:1])[1], [release("nope")], first=9)
    appends = {m: h[0][2:] for m, h in histories.items()}
    appends[stale_member] = stale
    heads = {m: (2, 0) for m in same}
    heads[stale_member] = (1, 0)
    assert run(store.append(appends, heads)) == [stale_member]
    for m in same:
        expected = histories[m][1] if m != stale_member else history(m, PAYLOADS[:2])[1]
        assert run(store.load(m)) == expected


def test_a_bucket_too_large_for_one_batch_is_cut_into_batches_under_the_limit(cassandra, test_keyspace):
    store = CassandraEventStore(RecordingSession(cassandra), test_keyspace)
    bucket = store.bucket(member())
    same = []
    while len(same) < 120:
        m = member()
        if store.bucket(m) == bucket:
            same.append(m)
    histories = {m: history(m, PAYLOADS) for m in same}
    sizes = [sum(row_bytes(store.row(bucket, m, d)) for d in h[0]) for m, h in histories.items()]
    assert sum(sizes) > 2 * BATCH_BYTES
    store.session.queries.clear()
    assert run(store.append({m: h[0] for m, h in histories.items()}, {m: (0, 0) for m in same})) == []
    batches = sum(" IF " in q for q in store.session.queries)
    assert 3 <= batches <= sum(sizes) // (BATCH_BYTES // 2) + 1
    assert run(store.load_many(same)) == {m: LoadedState(h[1], 7) for m, h in histories.items()}


def test_find_many_gives_the_stored_decisions_of_the_event_ids_it_knows(store):
    m = member()
    decisions, _ = history(m, PAYLOADS)
    run(store.append({m: decisions}, {m: (0, 0)}))
    ids = [f"{m}-3", f"{m}-0", "no-such-event", f"{m}-6", f"{m}-3"]
    assert run(store.find_many(m, ids)) == {d.event.event_id: d for d in decisions if d.event.event_id in ids}
    assert run(store.find_many(m, [])) == {}
    assert run(store.find_many(member(), ids)) == {}


def test_an_append_that_lost_leaves_nothing_findable(store):
    """The loser's event ids must not point at the positions the winner took."""
    m = member()
    decisions, state = history(m, PAYLOADS[:3])
    run(store.append({m: decisions}, {m: (0, 0)}))
    ours, _ = decide_from(state, [plan(device_limit=7)], first=20)
    theirs, _ = decide_from(state, [plan(device_limit=5)], first=30)
    assert run(store.append({m: theirs}, {m: state.position})) == []
    assert run(store.append({m: ours}, {m: state.position})) == [m]
    assert run(store.find_many(m, [f"{m}-20", f"{m}-30"])) == {f"{m}-30": theirs[0]}
    assert run(store.find(m, f"{m}-20")) is None
    assert run(store.find(m, f"{m}-30")) == theirs[0]


def test_find_reads_the_event_id_lookup_not_the_whole_partition(cassandra, test_keyspace):
    session = RecordingSession(cassandra)
    store = CassandraEventStore(session, test_keyspace)
    m = member()
    decisions, _ = history(m, PAYLOADS)
    run(store.append({m: decisions}, {m: (0, 0)}))
    session.queries.clear()
    rejected = next(d for d in decisions if d.kind == REJECTED)
    assert run(store.find(m, rejected.event.event_id)) == rejected
    assert session.queries and all("member_id = ? AND" in q for q in session.queries), session.queries


# --- HistoryReader: pages of a member's history, the member ids streamed --------------------------

def test_history_pages_give_every_decision_in_decision_order(store):
    m = member()
    decisions, _ = history(m, PAYLOADS + [acquire("l5", device="d9"), release("nope")])  # two more rejections
    run(store.append({m: decisions}, {m: (0, 0)}))
    assert [d.position for d in decisions] == [(1, 0), (2, 0), (3, 0), (3, 1), (4, 0), (5, 0), (6, 0), (6, 1),
                                               (6, 2)]
    assert run(store.page(m, None, 100)) == decisions
    read, after = [], None
    while True:
        page = run(store.page(m, after, 2))
        assert len(page) <= 2
        read += page
        if len(page) < 2:
            break
        after = page[-1].position
    assert read == decisions
    assert run(store.page(m, (3, 0), 2)) == decisions[3:5]  # a rejection's sub, then the next seq
    assert run(store.page(m, (6, 1), 10)) == decisions[-1:]
    assert run(store.page(m, (6, 2), 10)) == []
    assert run(store.page(m, (99, 0), 10)) == []


def test_history_of_an_unknown_member_is_empty_and_a_limit_must_be_positive(store):
    assert run(store.page(member(), None, 10)) == []
    assert run(store.page(member(), (1, 0), 10)) == []
    with pytest.raises(ValueError, match="limit"):
        run(store.page(member(), None, 0))


def test_member_ids_are_streamed_once_each(store):
    ms = [member() for _ in range(5)]
    for m in ms:
        decisions, _ = history(m, PAYLOADS[:2])
        run(store.append({m: decisions}, {m: (0, 0)}))

    async def collect(**kw):
        return [m async for m in store.stream_member_ids(**kw)]

    streamed = run(collect())
    assert set(ms) <= set(streamed) and len(streamed) == len(set(streamed))
    if isinstance(store, CassandraEventStore):  # page by page: a small fetch size gives the same ids
        assert sorted(run(collect(page_size=2))) == sorted(streamed)


def test_two_workers_racing_for_one_bucket_store_each_member_once(cassandra, test_keyspace):
    """Two stores (two worker processes: no lock in common) append different decisions for the same
    members of one bucket from the same heads, at once: each member is stored by exactly one of them,
    the other reports it lost, and what loads is the winner's state."""
    ours_store, theirs_store = CassandraEventStore(cassandra, test_keyspace), CassandraEventStore(cassandra, test_keyspace)
    bucket = ours_store.bucket(member())
    same = []
    while len(same) < 20:
        m = member()
        if ours_store.bucket(m) == bucket:
            same.append(m)
    base = {m: history(m, PAYLOADS[:2]) for m in same}
    assert run(ours_store.append({m: b[0] for m, b in base.items()}, {m: (0, 0) for m in same})) == []
    ours = {m: decide_from(b[1], [plan(device_limit=7)], first=20) for m, b in base.items()}
    theirs = {m: decide_from(b[1], [plan(device_limit=5)], first=30) for m, b in base.items()}
    heads = {m: (2, 0) for m in same}

    async def race():
        return await asyncio.gather(ours_store.append({m: o[0] for m, o in ours.items()}, heads),
                                    theirs_store.append({m: t[0] for m, t in theirs.items()}, heads))

    lost_ours, lost_theirs = run(race())
    assert sorted(lost_ours + lost_theirs) == sorted(same)  # every member lost by exactly one writer
    for m in same:
        winner = theirs if m in lost_ours else ours
        assert run(ours_store.load(m)) == winner[m][1]
