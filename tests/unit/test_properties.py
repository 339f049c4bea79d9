"""Properties of the decider on generated event streams, and codec round trips.

The streams (tests/support/strategies.py) use small id alphabets and limits so that every rule is
hit; times cross a month and a year boundary, and some events arrive late.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.adapters.avro.mapping import (
    Source,
    decode_event,
    decode_ledger_entry,
    decode_rejection,
    decode_snapshot,
    encode_event,
    encode_ledger_entry,
    encode_rejection,
    encode_snapshot,
)
from app.domain import (
    Accepted,
    Duplicate,
    LicenseAcquired,
    MemberState,
    Rejected,
    decide,
    evolve,
    record_rejection,
    state_to_dict,
    step,
    validate,
)
from app.domain.views import digest, eligibility
from tests.support.strategies import streams

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(events):
    state = MemberState.empty("m1")
    trace = []
    for ev in events:
        decision, state = step(state, ev)
        trace.append((ev, decision, state))
    return trace, state


@PROPERTY_SETTINGS
@given(streams())
def test_generated_events_are_well_formed(events) -> None:
    for ev in events:
        validate(ev)


@PROPERTY_SETTINGS
@given(streams())
def test_folding_the_durable_history_equals_deciding_step_by_step(events) -> None:
    trace, live = _run(events)
    rebuilt = MemberState.empty("m1")
    for ev, decision, _ in trace:  # what the event store keeps: accepted entries and rejections
        if isinstance(decision, Accepted):
            for recorded in decision.recorded:
                rebuilt = evolve(rebuilt, recorded)
        elif isinstance(decision, Rejected):
            rebuilt = record_rejection(rebuilt, ev, decision.clock)
    assert rebuilt == live


@PROPERTY_SETTINGS
@given(streams())
def test_views_rebuilt_from_the_ledger_alone_equal_the_live_views(events) -> None:
    trace, live = _run(events)
    projection = MemberState.empty("m1")
    for _, decision, _ in trace:
        if isinstance(decision, Accepted):
            for recorded in decision.recorded:
                projection = evolve(projection, recorded)
    assert digest(projection) == digest(live)


@PROPERTY_SETTINGS
@given(streams())
def test_decide_is_deterministic_and_pure(events) -> None:
    state = MemberState.empty("m1")
    for ev in events:
        before = state_to_dict(state)
        decision = decide(state, ev)
        assert decide(state, ev) == decision
        assert state_to_dict(state) == before
        _, state = step(state, ev)


@PROPERTY_SETTINGS
@given(streams())
def test_a_duplicate_changes_nothing(events) -> None:
    trace, _ = _run(events)
    for ev, decision, state in trace:
        if not isinstance(decision, Duplicate):
            assert step(state, ev) == (Duplicate(), state)


@PROPERTY_SETTINGS
@given(streams())
def test_seq_is_contiguous_and_the_clock_never_goes_back(events) -> None:
    trace, final = _run(events)
    seqs = [r.seq for _, d, _ in trace if isinstance(d, Accepted) for r in d.recorded]
    assert seqs == list(range(1, len(seqs) + 1))
    assert final.seq == len(seqs)
    clocks = [s.clock for _, _, s in trace]
    assert clocks == sorted(clocks)


@PROPERTY_SETTINGS
@given(streams())
def test_eligibility_agrees_with_the_decider(events) -> None:
    trace, _ = _run(events)
    previous = MemberState.empty("m1")
    for ev, decision, state in trace:
        if isinstance(ev.payload, LicenseAcquired) and not isinstance(decision, Duplicate):
            verdict = eligibility(previous, ev.payload, ev.occurred_at)
            assert verdict.eligible == isinstance(decision, Accepted)
            if isinstance(decision, Rejected):
                assert (verdict.reason, verdict.detail) == (decision.reason, decision.detail)
        previous = state


@PROPERTY_SETTINGS
@given(streams(), st.data())
def test_snapshot_round_trip_and_resume_equal_the_uninterrupted_run(events, data) -> None:
    cut = data.draw(st.integers(0, len(events)))
    _, at_cut = _run(events[:cut])

    restored = decode_snapshot(encode_snapshot(at_cut))
    assert restored == at_cut

    resumed = restored
    for ev in events[cut:]:
        _, resumed = step(resumed, ev)
    assert resumed == _run(events)[1]


@PROPERTY_SETTINGS
@given(streams())
def test_every_event_ledger_entry_and_rejection_round_trips_through_the_codec(events) -> None:
    source = Source("downloads.events", 7, 123_456_789)
    for ev, decision, _ in _run(events)[0]:
        assert decode_event(encode_event(ev)) == ev
        if isinstance(decision, Accepted):
            for recorded in decision.recorded:
                entry = decode_ledger_entry(encode_ledger_entry(recorded, source))
                assert (entry.recorded, entry.source) == (recorded, source)
        elif isinstance(decision, Rejected):
            rejection = decode_rejection(encode_rejection(ev, decision.reason, decision.detail, decision.clock, source))
            assert (rejection.event, rejection.reason, rejection.detail, rejection.clock, rejection.source) == (
                ev, decision.reason, decision.detail, decision.clock, source,
            )
