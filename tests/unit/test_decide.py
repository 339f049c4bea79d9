"""decide / evolve / record_rejection / step: clock, duplicates, state changes, purity."""

from __future__ import annotations

import pytest

from app.domain import (
    Accepted,
    Duplicate,
    MemberState,
    Recorded,
    Rejected,
    decide,
    evolve,
    record_rejection,
    state_to_dict,
    step,
)
from app.domain.rules import Reason
from tests.support.domain_builders import DAY, MEMBER, T0, acquire, deactivate, event, plan, release, renew, run


def test_member_clock_does_not_move_back_on_a_late_event() -> None:
    _, state = run([event(plan(), T0 + 5 * DAY)])
    late = event(acquire(expires=T0 + 10 * DAY), T0)

    decision, after = step(state, late)

    assert isinstance(decision, Accepted)
    assert decision.recorded[0].clock == T0 + 5 * DAY
    assert after.clock == T0 + 5 * DAY


def test_rejection_carries_the_advanced_clock_and_advances_the_state_clock() -> None:
    state = MemberState.empty(MEMBER)
    rejected_event = event(renew("unknown"), T0 + DAY)

    decision, after = step(state, rejected_event)

    assert decision == Rejected(Reason.UNKNOWN_LICENSE, "license unknown is unknown for this member", T0 + DAY)
    assert after.clock == T0 + DAY
    assert after.seq == 0
    assert after.rejections_since_seq == 1
    assert rejected_event.event_id in after.processed


def test_accepted_events_get_contiguous_seq_and_reset_rejections_since_seq() -> None:
    events = [event(acquire("l1")), event(renew("nope")), event(renew("nope2")), event(renew("l1"))]
    decisions, state = run(events)

    assert [type(d) for d in decisions] == [Accepted, Rejected, Rejected, Accepted]
    assert [d.recorded[0].seq for d in decisions if isinstance(d, Accepted)] == [1, 2]
    assert (state.seq, state.rejections_since_seq) == (2, 0)
    _, state = run([event(release("nope"))], state)
    assert (state.seq, state.rejections_since_seq) == (2, 1)


def test_duplicate_of_an_accepted_event_changes_nothing() -> None:
    first = event(acquire("l1"))
    _, state = run([first])

    decision, after = step(state, first)

    assert decision == Duplicate()
    assert after is state


def test_duplicate_of_a_rejected_event_stays_rejected_even_when_it_would_now_be_accepted() -> None:
    blocked = event(acquire("l2", "d2"))  # device limit 1: d1 holds l1
    decisions, state = run([event(acquire("l1", "d1")), blocked, event(release("l1"))])
    assert isinstance(decisions[1], Rejected)
    assert isinstance(decide(state, event(acquire("l2", "d2"))), Accepted)  # a fresh event id would pass

    decision, after = step(state, blocked)

    assert decision == Duplicate()
    assert after is state


def test_duplicate_detection_uses_event_id_not_content() -> None:
    _, state = run([event(acquire("l1"), event_id="same")])
    assert decide(state, event(renew("l1"), event_id="same")) == Duplicate()


def test_device_deactivated_releases_every_unreleased_license_on_the_device_only() -> None:
    _, state = run(
        [
            event(plan(device_limit=2)),
            event(acquire("l1", "d1")),
            event(acquire("l2", "d1", title="t2", expires=T0 + DAY)),
            event(acquire("l3", "d2", title="t3")),
            event(deactivate("d1"), T0 + 2 * DAY),
        ]
    )

    assert state.licenses["l1"].released
    assert state.licenses["l2"].released  # expired by time, still released by the deactivation
    assert not state.licenses["l3"].released
    assert state.devices_in_use(T0 + 2 * DAY) == ["d2"]


def test_plan_downgrade_never_revokes_existing_licenses() -> None:
    _, state = run([event(plan(device_limit=2)), event(acquire("l1", "d1")), event(acquire("l2", "d2"))])

    decision, after = step(state, event(plan(device_limit=1, downloads_per_device=1, monthly_limit=1)))

    assert isinstance(decision, Accepted)
    assert after.plan.device_limit == 1
    assert [lic.license_id for lic in after.active_licenses(T0)] == ["l1", "l2"]
    assert after.devices_in_use(T0) == ["d1", "d2"]


def test_acquire_and_renew_count_downloads_in_the_year_and_month_of_the_clock() -> None:
    _, state = run([event(acquire("l1", title="t1")), event(renew("l1")), event(acquire("l2", title="t2"))])

    assert state.title_downloads("t1", 2024) == 2
    assert state.title_downloads("t2", 2024) == 1
    assert state.downloads_in_month(2024, 6) == 3
    assert state.licenses["l1"].renewals == 1
    assert state.licenses["l1"].expires_at == T0 + 60 * DAY


def test_released_license_cannot_be_renewed_or_released_again() -> None:
    decisions, _ = run([event(acquire("l1")), event(release("l1")), event(renew("l1")), event(release("l1"))])
    assert [getattr(d, "reason", None) for d in decisions] == [
        None,
        None,
        Reason.LICENSE_RELEASED,
        Reason.LICENSE_RELEASED,
    ]


def test_decide_evolve_and_record_rejection_never_mutate_their_input() -> None:
    _, state = run([event(plan(device_limit=2, monthly_limit=5)), event(acquire("l1"))])
    before = state_to_dict(state)
    for ev in [event(acquire("l2", "d2")), event(renew("l1")), event(release("l1")), event(deactivate("d1")),
               event(renew("zzz"))]:
        step(state, ev)
    record_rejection(state, event(renew("zzz")), T0)
    assert state_to_dict(state) == before


def test_evolve_refuses_a_seq_gap() -> None:
    state = MemberState.empty(MEMBER)
    with pytest.raises(ValueError, match="seq 2 does not follow seq 0"):
        evolve(state, Recorded(seq=2, clock=T0, event=event(acquire())))


def test_events_of_another_member_are_refused() -> None:
    with pytest.raises(ValueError, match="member m2"):
        decide(MemberState.empty(MEMBER), event(acquire(), member="m2"))


def test_evolve_of_a_recorded_renewal_of_an_unknown_license_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown license l9"):
        evolve(MemberState.empty(MEMBER), Recorded(1, T0, event(renew("l9"))))
