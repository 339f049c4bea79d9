"""Policies (DOMAIN.md "Policies"): each override replaces exactly the limit it names, at decision time."""
from __future__ import annotations

import pytest

from app.domain import EMPTY, KEEP, Accepted, PlanLimits, Policy, Rejected, StudioLimits, TitleLimits
from app.domain.decide import step
from app.domain.state import DEFAULT_PLAN, MemberState, Plan
from app.domain.views import eligibility, summary
from tests.support.domain_builders import DAY, HOUR, MEMBER, T0, acquire, event, plan, renew


def outcomes(events, policy: Policy = EMPTY) -> list[str]:
    state = MemberState.empty(MEMBER)
    out = []
    for ev in events:
        decision, state = step(state, ev, policy)
        out.append("accepted" if isinstance(decision, Accepted) else str(decision.reason)
                   if isinstance(decision, Rejected) else "duplicate")
    return out


def test_the_empty_policy_changes_nothing():
    assert EMPTY.is_empty and Policy() == EMPTY
    p = Plan("gold", 3, 4, 5)
    assert EMPTY.plan(p) is p
    assert EMPTY.title_yearly_limit("t1", 7) == 7 and EMPTY.max_renewals("t1", None) is None
    assert EMPTY.studio_concurrent_limit("s1", 2) == 2


def test_a_plan_override_replaces_only_the_limits_it_names():
    policy = Policy(plans={"gold": PlanLimits(device_limit=5)})
    assert policy.plan(Plan("gold", 1, 2, 3)) == Plan("gold", 5, 2, 3)
    assert policy.plan(Plan("silver", 1, 2, 3)) == Plan("silver", 1, 2, 3)
    unlimited = Policy(plans={"gold": PlanLimits(monthly_limit=None)})
    assert unlimited.plan(Plan("gold", 1, 2, 3)) == Plan("gold", 1, 2, None)


def test_device_limit_override_flips_a_device_limit_rejection():
    events = [event(plan(device_limit=1, plan_id="basic"), at=T0),
              event(acquire("l1", device="d1"), at=T0 + 1),
              event(acquire("l2", device="d2"), at=T0 + 2)]
    assert outcomes(events) == ["accepted", "accepted", "DEVICE_LIMIT"]
    assert outcomes(events, Policy(plans={"basic": PlanLimits(device_limit=2)})) == ["accepted"] * 3
    assert outcomes(events, Policy(plans={"other": PlanLimits(device_limit=2)})) == ["accepted", "accepted",
                                                                                      "DEVICE_LIMIT"]


def test_the_default_plan_override_applies_before_any_plan_change():
    events = [event(acquire("l1", device="d1"), at=T0), event(acquire("l2", device="d2"), at=T0 + 1),
              event(plan(device_limit=1, plan_id="basic"), at=T0 + 2), event(acquire("l3", device="d3"), at=T0 + 3)]
    policy = Policy(default_plan=PlanLimits(device_limit=2))
    assert outcomes(events) == ["accepted", "DEVICE_LIMIT", "accepted", "DEVICE_LIMIT"]
    assert outcomes(events, policy) == ["accepted", "accepted", "accepted", "DEVICE_LIMIT"]
    assert policy.plan(DEFAULT_PLAN) == Plan("default", 2, 100, None)
    with pytest.raises(ValueError, match="overridden twice"):
        Policy(plans={"default": PlanLimits()}, default_plan=PlanLimits())


def test_downloads_per_device_and_monthly_limit_overrides_with_the_numbers_in_the_detail():
    events = [event(plan(device_limit=1, downloads_per_device=5, monthly_limit=None, plan_id="p"), at=T0)]
    events += [event(acquire(f"l{i}", device="d1"), at=T0 + i) for i in range(1, 4)]
    policy = Policy(plans={"p": PlanLimits(downloads_per_device=2)})
    state = MemberState.empty(MEMBER)
    for ev in events[:-1]:
        _, state = step(state, ev, policy)
    decision, _ = step(state, events[-1], policy)
    assert isinstance(decision, Rejected) and decision.reason == "DEVICE_DOWNLOAD_LIMIT"
    assert decision.detail == "downloads per device limit 2 reached: device d1 holds 2 active licenses"
    monthly = Policy(plans={"p": PlanLimits(monthly_limit=1)})
    decision, _ = step(state, events[-1], monthly)
    assert isinstance(decision, Rejected) and decision.reason == "MONTHLY_LIMIT"
    assert decision.detail == "monthly limit 1 of plan p reached: 2 downloads in 2024-06"


def test_title_overrides_apply_to_acquisitions_and_to_renewals_of_licenses_acquired_before():
    events = [event(plan(device_limit=1), at=T0),
              event(acquire("l1", title="t1", title_yearly_limit=None, max_renewals=None), at=T0 + 1),
              event(renew("l1", expires=T0 + 40 * DAY), at=T0 + 2),
              event(renew("l1", expires=T0 + 50 * DAY), at=T0 + 3),
              event(acquire("l2", title="t1"), at=T0 + 4)]
    assert outcomes(events) == ["accepted"] * 5
    assert outcomes(events, Policy(titles={"t1": TitleLimits(max_renewals=1)})) == [
        "accepted", "accepted", "accepted", "RENEWAL_LIMIT", "accepted"]
    assert outcomes(events, Policy(titles={"t1": TitleLimits(title_yearly_limit=2)})) == [
        "accepted", "accepted", "accepted", "TITLE_YEARLY_LIMIT", "TITLE_YEARLY_LIMIT"]
    # a limit the event carries is lifted by an explicit None, kept by KEEP
    carried = [event(acquire("k1", title="t2", max_renewals=0), at=T0), event(renew("k1"), at=T0 + 1)]
    assert outcomes(carried) == ["accepted", "RENEWAL_LIMIT"]
    assert outcomes(carried, Policy(titles={"t2": TitleLimits(max_renewals=None)})) == ["accepted", "accepted"]
    assert outcomes(carried, Policy(titles={"t2": TitleLimits(title_yearly_limit=9)})) == ["accepted",
                                                                                           "RENEWAL_LIMIT"]


def test_studio_override_applies_to_acquisitions_and_expired_renewals():
    events = [event(plan(device_limit=3), at=T0),
              event(acquire("s1", device="d1", studio="st", expires=T0 + HOUR), at=T0),
              event(acquire("s2", device="d2", studio="st"), at=T0 + 1),
              event(renew("s1", expires=T0 + 10 * DAY), at=T0 + 2 * HOUR)]
    assert outcomes(events) == ["accepted"] * 4
    policy = Policy(studios={"st": StudioLimits(studio_concurrent_limit=1)})
    assert outcomes(events, policy) == ["accepted", "accepted", "STUDIO_CONCURRENT_LIMIT", "accepted"]
    tighter = [*events[:3], event(acquire("s3", device="d3", studio="st"), at=T0 + 3)]
    assert outcomes(tighter, Policy(studios={"st": StudioLimits(studio_concurrent_limit=2)}))[-1] == \
        "STUDIO_CONCURRENT_LIMIT"


def test_views_under_a_policy():
    state = MemberState.empty(MEMBER)
    for ev in [event(plan(device_limit=1, plan_id="p"), at=T0), event(acquire("l1", device="d1"), at=T0)]:
        _, state = step(state, ev)
    policy = Policy(plans={"p": PlanLimits(device_limit=3)})
    assert summary(state, T0, policy)["plan"]["device_limit"] == 3
    assert summary(state, T0)["plan"]["device_limit"] == 1
    assert not eligibility(state, acquire("l2", device="d2"), T0).eligible
    assert eligibility(state, acquire("l2", device="d2"), T0, policy).eligible


@pytest.mark.parametrize("make", [
    lambda: PlanLimits(device_limit=0),
    lambda: PlanLimits(device_limit=None),
    lambda: PlanLimits(downloads_per_device=True),
    lambda: PlanLimits(monthly_limit=0),
    lambda: TitleLimits(title_yearly_limit=0),
    lambda: TitleLimits(max_renewals=-1),
    lambda: StudioLimits(studio_concurrent_limit=0),
])
def test_limits_outside_the_domain_are_refused(make):
    with pytest.raises(ValueError, match="must be a whole number"):
        make()


def test_keep_is_the_default_of_every_override():
    assert PlanLimits() == PlanLimits(KEEP, KEEP, KEEP)
    assert TitleLimits().max_renewals is KEEP and StudioLimits().studio_concurrent_limit is KEEP
    assert repr(KEEP) == "KEEP"
