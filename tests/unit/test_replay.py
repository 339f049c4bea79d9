"""The pure parts of the replay and the verification: namespace naming, the in-memory fold of ledger
entries (duplicates, out-of-order entries, gaps), the comparison of a view with the event store,
and the Verifier's handling of views behind the store (in-memory fakes, no services)."""
from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from app.adapters.memory.event_store import InMemoryEventStore
from app.adapters.memory.projections import InMemoryReadModels, InMemoryViewStore
from app.domain import Accepted, MemberState, step
from app.domain.history import Source, StoredDecision, to_stored
from app.domain.views import digest
from app.service.ledger_fold import LedgerFold, LedgerGapError
from app.service.replay import next_namespace, redis_chunks
from app.service.verify import (
    CASSANDRA,
    DIGEST,
    MISSING,
    REDIS,
    SEQ,
    UNKNOWN,
    Mismatch,
    Verifier,
    compare,
    fold_accepted,
)
from tests.support.domain_builders import DAY, T0, acquire, event, plan, release, renew
from tests.support.random_history import random_history

SOURCE = Source("downloads.events", 0, 0)


def decide_all(events):
    """The oracle: final states, the accepted entries in decision order, the stored decisions."""
    states: dict[str, MemberState] = {}
    entries = []
    stored: dict[str, list[StoredDecision]] = {}
    for ev in events:
        state = states.get(ev.member_id) or MemberState.empty(ev.member_id)
        decision, states[ev.member_id] = step(state, ev)
        if isinstance(decision, Accepted):
            entries += decision.recorded
        stored.setdefault(ev.member_id, []).extend(to_stored(decision, ev, states[ev.member_id], SOURCE))
    return states, entries, stored


def history(member="m1"):
    return [
        event(plan(device_limit=2), at=T0, member=member),
        event(acquire("l1", device="d1"), at=T0 + 1, member=member),
        event(acquire("l2", device="d2"), at=T0 + 2, member=member),
        event(acquire("l3", device="d3"), at=T0 + 3, member=member),  # DEVICE_LIMIT
        event(renew("l1", expires=T0 + 50 * DAY), at=T0 + 4, member=member),
        event(release("l2"), at=T0 + 5, member=member),
        event(acquire("l4", device="d3"), at=T0 + 6, member=member),
    ]


def digests(states):
    return {s.member_id: digest(s) for s in states if s.seq > 0}


# --- namespace naming ---------------------------------------------------------------------


def test_next_namespace_follows_the_active_one():
    assert next_namespace("v1", set()) == "v2"
    assert next_namespace("v9", {"v1", "v9"}) == "v10"


def test_next_namespace_skips_namespaces_in_use():
    assert next_namespace("v1", {"v1", "v2", "v3"}) == "v4"
    assert next_namespace("v2", {"v1", "v2", "v4"}) == "v3"


def test_next_namespace_after_a_custom_name_is_the_first_free_vn():
    assert next_namespace("blue", {"v1"}) == "v2"
    assert next_namespace("blue", set()) == "v1"


# --- the fold -----------------------------------------------------------------------------


def test_fold_in_ledger_order_equals_the_decider():
    events = random_history("f", members=12, events=600, seed=3)
    states, entries, _ = decide_all(events)
    fold = LedgerFold()
    for r in entries:
        fold.add(r)
    assert fold.gaps() == {}
    assert fold.duplicates == 0 and fold.applied == len(entries)
    assert digests(fold.states()) == digests(states.values())


def test_republished_entries_are_duplicates_and_change_nothing():
    states, entries, _ = decide_all(history("a") + history("b"))
    rng = random.Random(5)
    ledger = []
    republished = 0
    for i, r in enumerate(entries):  # after each entry, sometimes republish an earlier one of the same member
        ledger.append(r)
        earlier = [e for e in entries[:i + 1] if e.event.member_id == r.event.member_id]
        if rng.random() < 0.5:
            ledger.append(rng.choice(earlier))
            republished += 1
    ledger += entries  # and the whole ledger once more at the end
    fold = LedgerFold()
    for r in ledger:
        fold.add(r)
    assert fold.duplicates == republished + len(entries)
    assert fold.applied == len(entries)
    assert digests(fold.states()) == digests(states.values())
    assert {s.member_id: s.seq for s in fold.states()} == {"a": 6, "b": 6}


def test_out_of_order_entries_wait_for_the_gap_to_close():
    states, entries, _ = decide_all(history())
    fold = LedgerFold()
    for r in [entries[0], entries[3], entries[2], entries[3], entries[1], entries[4], entries[5]]:
        fold.add(r)
    assert fold.duplicates == 1  # entries[3] twice while pending
    assert fold.gaps() == {}
    assert digests(fold.states()) == digests(states.values())


def test_a_gap_left_at_the_end_is_filled_from_the_event_store():
    states, entries, _ = decide_all(history())
    fold = LedgerFold()
    for r in entries[:2] + entries[4:]:  # seqs 3 and 4 never published
        fold.add(r)
    assert fold.gaps() == {"m1": (2, 4)}
    assert fold.fill("m1", entries[2:4]) == 2
    assert fold.gaps() == {}
    assert digests(fold.states()) == digests(states.values())


def test_from_a_timestamp_the_earlier_history_is_one_gap_from_zero():
    states, entries, _ = decide_all(history())
    fold = LedgerFold()
    for r in entries[3:]:  # the ledger read from a timestamp: the first entry is seq 4
        fold.add(r)
    assert fold.states() == []  # nothing applied yet
    assert fold.gaps() == {"m1": (0, 3)}
    fold.fill("m1", entries[:3])
    assert digests(fold.states()) == digests(states.values())


def test_a_fill_that_does_not_close_the_gap_is_refused():
    _, entries, _ = decide_all(history())
    fold = LedgerFold()
    for r in entries[:1] + entries[4:]:
        fold.add(r)
    with pytest.raises(LedgerGapError):
        fold.fill("m1", entries[1:2])  # seq 2 only; 3 and 4 are missing


def test_folded_states_carry_no_processed_ids():
    _, entries, _ = decide_all(history())
    fold = LedgerFold()
    for r in entries:
        fold.add(r)
    assert all(len(s.processed) == 0 for s in fold.states())


def test_redis_chunks_bound_members_and_licenses():
    states, _, _ = decide_all(history("a") + history("b") + history("c") + history("d"))
    sized = list(states.values())  # 3 licenses each
    assert [len(c) for c in redis_chunks(sized, members=3)] == [3, 1]
    assert [len(c) for c in redis_chunks(sized, members=10, licenses=7)] == [2, 2]
    assert [len(c) for c in redis_chunks(sized, members=10, licenses=1)] == [1, 1, 1, 1]  # one alone may exceed
    assert [s for c in redis_chunks(sized, members=3) for s in c] == sized


# --- comparison with the event store ------------------------------------------------------


def test_compare_names_every_kind_of_difference():
    states, _, _ = decide_all(history())
    expected = states["m1"]
    assert compare(REDIS, "m1", expected, expected) is None
    assert compare(REDIS, "m1", expected, None) == Mismatch("m1", REDIS, MISSING, 6, None)
    assert compare(REDIS, "m1", None, expected) == Mismatch("m1", REDIS, UNKNOWN, None, 6)
    assert compare(REDIS, "m1", MemberState.empty("m1"), expected).kind == UNKNOWN
    assert compare(REDIS, "m1", MemberState.empty("m1"), None) is None  # only rejections: no view expected
    assert compare(REDIS, "m1", expected, replace(expected, seq=9)) == Mismatch("m1", REDIS, SEQ, 6, 9)
    wrong = replace(expected, plan=replace(expected.plan, device_limit=7))
    assert compare(REDIS, "m1", expected, wrong) == Mismatch("m1", REDIS, DIGEST, 6, 6)
    # the clock and the processed ids are not part of the views
    assert compare(REDIS, "m1", expected, replace(expected, clock=expected.clock + 99,
                                                      processed=MemberState.empty("m1").processed)) is None


def test_mismatch_descriptions_say_how():
    assert "missing from redis" in Mismatch("m1", REDIS, MISSING, 4, None).describe()
    assert "ahead of" in Mismatch("m1", REDIS, SEQ, 4, 9).describe()
    assert "behind" in Mismatch("m1", CASSANDRA, SEQ, 4, 2).describe()
    assert "not in the event store" in Mismatch("m1", REDIS, UNKNOWN, None, 2).describe()
    assert "digest differs" in Mismatch("m1", REDIS, DIGEST, 4, 4).describe()


def test_fold_accepted_gives_the_state_at_every_seq():
    states, entries, _ = decide_all(history())
    by_seq = fold_accepted("m1", entries)
    assert sorted(by_seq) == list(range(0, 7))
    assert digest(by_seq[6]) == digest(states["m1"])


# --- the Verifier with fakes --------------------------------------------------------------


def FakeViews(states=None):
    views = InMemoryViewStore()
    views.states.update(states or {})
    return views


def FakeReadModels(states=None):
    models = InMemoryReadModels()
    models.states.update(states or {})
    return models


def store_with(stored):
    store = InMemoryEventStore()
    asyncio.run(store.append(stored, {m: (0, 0) for m in stored}))
    return store


def test_verifier_reports_each_store_and_member_that_differs():
    states, _, stored = decide_all(history("a") + history("b") + history("c"))
    store = store_with(stored)
    redis_views = {m: s for m, s in states.items() if m != "b"}  # b missing from Redis
    redis_views["x"] = states["a"]  # a view of a member the store does not know
    cassandra = dict(states)
    cassandra["c"] = replace(states["c"], seq=states["c"].seq + 5)  # c ahead in Cassandra
    verifier = Verifier(store, FakeViews(redis_views), FakeReadModels(cassandra), chunk=2, concurrency=2)
    report = asyncio.run(verifier.verify("v1", set(stored) | {"x"}))
    assert not report.ok
    assert report.differing == ["b", "c", "x"]
    kinds = {(m.member_id, m.store, m.kind) for m in report.mismatches}
    assert kinds == {("b", REDIS, MISSING), ("c", CASSANDRA, SEQ), ("x", REDIS, UNKNOWN)}


def test_verifier_accepts_a_correct_prefix_when_allowed_and_returns_the_state_to_top_up():
    states, entries, stored = decide_all(history())
    store = store_with(stored)
    prefix = fold_accepted("m1", entries)[4]
    views, models = FakeViews({"m1": prefix}), FakeReadModels({"m1": prefix})
    strict = asyncio.run(Verifier(store, views, models).verify("v2", ["m1"]))
    assert {m.kind for m in strict.mismatches} == {SEQ}
    report = asyncio.run(Verifier(store, views, models).verify("v2", ["m1"], allow_behind=True))
    assert report.ok and [(b.member_id, b.view_seq, b.store_seq) for b in report.behind] == [("m1", 4, 6)]
    assert digest(report.behind[0].state) == digest(states["m1"])


def test_verifier_refuses_a_wrong_prefix_even_when_behind_is_allowed():
    _, entries, stored = decide_all(history())
    store = store_with(stored)
    prefix = fold_accepted("m1", entries)[4]
    wrong = replace(prefix, plan=replace(prefix.plan, plan_id="forged"))
    report = asyncio.run(Verifier(store, FakeViews({"m1": wrong}), FakeReadModels({"m1": prefix}))
                         .verify("v2", ["m1"], allow_behind=True))
    assert [(m.store, m.kind) for m in report.mismatches] == [(REDIS, DIGEST)]


def test_settle_rechecks_lagging_members_until_they_caught_up():
    states, entries, stored = decide_all(history())
    store = store_with(stored)
    views = FakeViews({"m1": fold_accepted("m1", entries)[3]})
    models = FakeReadModels({"m1": states["m1"]})
    calls = {"n": 0}
    original = views.read_many

    async def catching_up(member_ids):
        calls["n"] += 1
        if calls["n"] == 2:  # the live projector applied the rest meanwhile
            views.states["m1"] = states["m1"]
        return await original(member_ids)

    views.read_many = catching_up
    report = asyncio.run(Verifier(store, views, models).verify("v1", ["m1"], settle_s=5))
    assert report.ok and calls["n"] == 2
