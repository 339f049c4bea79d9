"""The what-if service (app/service/whatif.py) over the in-memory event store.

The property: for random histories and random policies, the what-if of a member equals deciding its
inputs with the pure domain under that policy. The rest: the window, the report, streaming.
"""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.adapters.memory.event_store import InMemoryEventStore
from app.domain import EMPTY, Accepted, Duplicate, MemberState, PlanLimits, Policy, Rejected, step
from app.domain.history import ACCEPTED
from app.service.whatif import WhatIf, Window, sample, transition_label
from tests.support.domain_builders import HOUR, T0, acquire, event, plan, release
from tests.support.histories import decided
from tests.support.strategies import policies, streams

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(coro):
    return asyncio.run(coro)


def stored(*histories) -> InMemoryEventStore:
    """An event store holding each (member, events) history as the live decider (EMPTY policy) stored it."""
    store = InMemoryEventStore()
    for member, events in histories:
        _, decisions, _ = decided(events, member)
        if decisions:
            assert run(store.append({member: decisions}, {member: (0, 0)})) == []
    return store


def oracle(member: str, events, policy: Policy):
    """Deciding the inputs with the pure domain: per decided (non-duplicate) event, (event id, recorded
    outcome, outcome and detail under ``policy``), and both final states."""
    recorded = whatif = MemberState.empty(member)
    rows = []
    for ev in events:
        before, after = step(recorded, ev), step(whatif, ev, policy)
        (d0, recorded), (d1, whatif) = before, after
        assert isinstance(d0, Duplicate) == isinstance(d1, Duplicate)  # processed ids do not depend on outcomes
        if not isinstance(d0, Duplicate):
            rows.append((ev.event_id, _outcome(d0)[0], *_outcome(d1)))
    return rows, recorded, whatif


def _outcome(decision):
    if isinstance(decision, Accepted):
        return ACCEPTED, None
    assert isinstance(decision, Rejected)
    return str(decision.reason), decision.detail


@PROPERTY
@given(streams(max_events=60), policies(), st.integers(1, 7))
def test_the_whatif_of_a_member_equals_deciding_its_inputs_under_the_policy(events, policy, page_size):
    store = stored(("m1", events))
    result = run(WhatIf(store, page_size=page_size).member("m1", policy, keep_flips=10_000))
    rows, recorded, whatif = oracle("m1", events, policy)
    flips = [(e, r, o, d) for e, r, o, d in rows if o != r]
    assert [(f.event.event_id, f.recorded, f.outcome, f.detail) for f in result.flips] == flips
    assert result.events == len(rows) and result.flip_count == len(flips)
    assert result.transitions == Counter((r, o) for _, r, o, _ in flips)
    assert result.whatif == whatif
    assert result.recorded == recorded
    assert result.found == bool(rows)


@PROPERTY
@given(streams(max_events=60), st.integers(1, 7))
def test_the_empty_policy_flips_nothing(events, page_size):
    store = stored(("m1", events))
    result = run(WhatIf(store, page_size=page_size).member("m1", EMPTY))
    assert result.flip_count == 0 and result.flips == []
    assert result.whatif == result.recorded == run(store.load("m1"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(streams(max_events=25), min_size=1, max_size=5), policies(), st.integers(1, 3))
def test_the_report_over_members_adds_up_their_whatifs(histories, policy, concurrency):
    members = [(f"m{i}", [ev.__class__(ev.event_id, f"m{i}", ev.occurred_at, ev.producer, ev.payload) for ev in h])
               for i, h in enumerate(histories)]
    store = stored(*members)
    service = WhatIf(store, concurrency=concurrency, page_size=4)
    report = run(service.run(policy, [m for m, _ in members] + ["nobody"], examples=2))
    singles = [run(service.member(m, policy)) for m, _ in members]
    assert report.members == len(members) + 1
    assert report.unknown == 1 + sum(1 for s in singles if not s.found)
    assert report.events == sum(s.events for s in singles)
    assert report.flips == sum((s.transitions for s in singles), Counter())
    assert report.members_affected == sum(1 for s in singles if s.flip_count)
    assert report.active_downloads == tuple(map(sum, zip(*(s.active_downloads() for s in singles), (0, 0))))
    assert report.devices_in_use == tuple(map(sum, zip(*(s.devices_in_use() for s in singles), (0, 0))))
    ranked = sorted((s for s in singles if s.flip_count), key=lambda s: (-s.flip_count, s.member_id))[:2]
    assert [(e.member_id, e.flip_count, e.first) for e in report.examples] == \
        [(s.member_id, s.flip_count, s.flips[0]) for s in ranked]


def device_limit_history(member: str = "m1"):
    """Plan basic (1 device); the second device is refused, then freed; 4 events, one rejection."""
    return [event(plan(device_limit=1, plan_id="basic"), at=T0, member=member),
            event(acquire("l1", device="d1"), at=T0 + HOUR, member=member),
            event(acquire("l2", device="d2"), at=T0 + 2 * HOUR, member=member),
            event(release("l1"), at=T0 + 3 * HOUR, member=member),
            event(acquire("l3", device="d3"), at=T0 + 4 * HOUR, member=member)]


TWO_DEVICES = Policy(plans={"basic": PlanLimits(device_limit=2)})


def test_a_looser_plan_flips_the_rejection_and_the_states_part():
    store = stored(("m1", device_limit_history()))
    result = run(WhatIf(store).member("m1", TWO_DEVICES, keep_flips=10))
    assert [(f.recorded, f.outcome, f.detail) for f in result.flips] == [("DEVICE_LIMIT", "accepted", None)]
    flip = result.flips[0]
    assert flip.position == (2, 1) and flip.recorded_detail == "device limit 1 reached: devices in use d1"
    assert flip.event.payload == acquire("l2", device="d2")
    assert result.active_downloads() == (1, 2) and result.devices_in_use() == (1, 2)
    assert result.recorded == run(store.load("m1")) and result.whatif.seq == result.recorded.seq + 1


def test_a_tighter_plan_flips_an_acceptance():
    store = stored(("m1", device_limit_history()))
    result = run(WhatIf(store).member("m1", Policy(plans={"basic": PlanLimits(monthly_limit=1)})))
    assert result.transitions == Counter({("accepted", "MONTHLY_LIMIT"): 1})
    assert result.flips[0].detail == "monthly limit 1 of plan basic reached: 1 downloads in 2024-06"
    assert {transition_label(*t) for t in result.transitions} == {"accepted -> MONTHLY_LIMIT"}
    assert result.active_downloads() == (1, 0) and result.devices_in_use() == (1, 0)


def test_the_window_keeps_recorded_outcomes_before_it_and_reads_nothing_after():
    store = stored(("m1", device_limit_history()))
    service = WhatIf(store)
    # the policy takes effect after the rejection: nothing flips, the last acquisition is still fine
    late = run(service.member("m1", TWO_DEVICES, window=Window(from_ms=T0 + 2 * HOUR + 1)))
    assert (late.rows, late.events, late.flip_count) == (5, 2, 0)
    # ends before the last acquisition: only the first flip
    early = run(service.member("m1", TWO_DEVICES, window=Window(to_ms=T0 + 4 * HOUR)))
    assert (early.rows, early.events, early.flip_count) == (4, 4, 1)
    assert early.clock == T0 + 3 * HOUR
    empty = run(service.member("m1", TWO_DEVICES, window=Window(from_ms=T0 + HOUR, to_ms=T0 + HOUR)))
    assert (empty.rows, empty.events, empty.flip_count) == (1, 0, 0)


def test_a_member_without_history_is_unknown():
    result = run(WhatIf(InMemoryEventStore()).member("ghost", TWO_DEVICES))
    assert not result.found and result.events == 0 and result.whatif == MemberState.empty("ghost")


def test_a_history_storing_an_event_twice_is_an_error_not_a_flip():
    store = stored(("m1", device_limit_history()))
    first = store.rows["m1"][(1, 0)]
    store.rows["m1"][(5, 0)] = first.__class__(5, 0, "accepted", first.event, T0 + 5 * HOUR, first.source)
    with pytest.raises(ValueError, match="stored twice"):
        run(WhatIf(store).member("m1", EMPTY))


def test_members_are_streamed_and_histories_read_a_page_at_a_time():
    histories = [(f"m{i}", device_limit_history(f"m{i}")) for i in range(40)]
    store = stored(*histories)
    concurrency = 3
    pulled, done = [0], [0]

    async def ids():
        for m, _ in histories:
            pulled[0] += 1
            # ids are pulled as workers free up: never the whole list ahead of the work
            assert pulled[0] - done[0] <= 3 * concurrency + 1
            yield m
            await asyncio.sleep(0)

    def progress(members, _events):
        done[0] = members

    report = run(WhatIf(store, concurrency=concurrency, page_size=2).run(TWO_DEVICES, ids(), progress=progress))
    assert report.members == 40 and report.members_affected == 40 and report.events == 200
    assert store.pages_read == 40 * 3  # 5 decisions in pages of 2
    assert report.flips == Counter({("DEVICE_LIMIT", "accepted"): 40})
    assert report.active_downloads == (40, 80) and report.devices_in_use == (40, 80)
    assert len(report.examples) == 10 and [e.member_id for e in report.examples] == sorted(
        e.member_id for e in report.examples)
    body = report.to_dict()
    assert body["flips"] == 40 and body["transitions"] == [{"recorded": "DEVICE_LIMIT", "whatif": "accepted",
                                                            "count": 40}]
    assert body["active_downloads"] == {"recorded": 40, "whatif": 80, "change": 40}
    assert body["examples"][0]["first"]["recorded"] == {"outcome": "rejected", "reason": "DEVICE_LIMIT",
                                                        "detail": "device limit 1 reached: devices in use d1"}


def test_a_failing_read_stops_the_run_with_that_error():
    class Broken(InMemoryEventStore):
        async def page(self, member_id, after, limit):
            raise ConnectionError("store down")

    with pytest.raises(ConnectionError, match="store down"):
        run(WhatIf(Broken(), concurrency=2).run(EMPTY, ["a", "b", "c"]))


def test_a_sample_is_drawn_from_the_whole_stream():
    ids = [f"m{i}" for i in range(100)]
    chosen = run(sample(ids, 10, seed=1))
    assert len(chosen) == len(set(chosen)) == 10 and set(chosen) <= set(ids)
    assert chosen == run(sample(ids, 10, seed=1)) and max(int(m[1:]) for m in chosen) >= 10
    assert sorted(run(sample(ids[:3], 10))) == ids[:3]
