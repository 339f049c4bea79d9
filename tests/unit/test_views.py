"""Views of DOMAIN.md: summary, licenses, title-year count, eligibility, digest."""

from __future__ import annotations

import json

import pytest

from app.domain import Accepted, MemberState, evolve, state_from_dict, state_to_dict
from app.domain.views import digest, eligibility, licenses, summary, title_year_count
from tests.support.domain_builders import DAY, T0, acquire, event, plan, release, renew, run


@pytest.fixture
def state() -> MemberState:
    _, state = run(
        [
            event(plan(device_limit=3, downloads_per_device=2, monthly_limit=10)),
            event(acquire("l1", "d1", title="t1", expires=T0 + 2 * DAY)),
            event(acquire("l2", "d1", title="t2", expires=T0 + 20 * DAY)),
            event(acquire("l3", "d2", title="t1", expires=T0 + 20 * DAY)),
            event(release("l3")),
            event(renew("l2", T0 + 40 * DAY)),
        ]
    )
    return state


def test_summary(state: MemberState) -> None:
    view = summary(state, T0 + 3 * DAY)
    assert view == {
        "member_id": "m1",
        "at": T0 + 3 * DAY,
        "seq": 6,
        "plan": {"plan_id": "p1", "device_limit": 3, "downloads_per_device": 2, "monthly_limit": 10},
        "devices_in_use": 1,
        "active_downloads": 1,
        "active_by_device": {"d1": 1},
        "month": "2024-06",
        "month_downloads": 4,
    }
    assert json.loads(json.dumps(view)) == view
    assert summary(state, T0)["active_by_device"] == {"d1": 2}
    assert summary(state, T0 + 40 * DAY)["month_downloads"] == 0  # July has none


@pytest.mark.parametrize(
    ("state_filter", "expected"),
    [(None, ["l1", "l2", "l3"]), ("active", ["l2"]), ("expired", ["l1"]), ("released", ["l3"])],
)
def test_licenses_with_their_state_at(state: MemberState, state_filter, expected) -> None:
    rows = licenses(state, T0 + 3 * DAY, state_filter)
    assert [row["license_id"] for row in rows] == expected
    by_id = {row["license_id"]: row for row in licenses(state, T0 + 3 * DAY)}
    assert by_id["l2"]["renewals"] == 1 and by_id["l2"]["expires_at"] == T0 + 40 * DAY
    assert {row["state"] for row in by_id.values()} == {"active", "expired", "released"}


def test_licenses_rejects_an_unknown_filter(state: MemberState) -> None:
    with pytest.raises(ValueError, match="state_filter"):
        licenses(state, T0, "gone")


def test_title_year_count(state: MemberState) -> None:
    assert title_year_count(state, "t1", 2024) == 2
    assert title_year_count(state, "t2", 2024) == 2  # acquired + renewed
    assert title_year_count(state, "t2", 2023) == 0


def test_eligibility_uses_the_rules_of_the_decider(state: MemberState) -> None:
    eligible = acquire("l9", "d3", title="t3", expires=T0 + 30 * DAY)
    assert eligibility(state, eligible, T0) == (True, None, None)

    full_device = acquire("l9", "d1", title="t3", expires=T0 + 30 * DAY)
    ok, reason, detail = eligibility(state, full_device, T0)
    assert (ok, reason) == (False, "DEVICE_DOWNLOAD_LIMIT") and "device d1" in detail
    assert eligibility(state, full_device, T0 + 3 * DAY).eligible  # l1 has expired by then

    conflict = acquire("l1", "d3")
    assert eligibility(state, conflict, T0).reason == "LICENSE_ID_CONFLICT"


def test_eligibility_never_evaluates_before_the_member_clock() -> None:
    _, state = run([event(plan(), T0 + 10 * DAY)])
    result = eligibility(state, acquire(expires=T0 + 5 * DAY), at=T0)
    assert result.reason == "ALREADY_EXPIRED"


def test_digest_is_stable_and_ignores_clock_and_processed_ids(state: MemberState) -> None:
    # A view rebuilt from the ledger alone has no rejection clock and no processed ids.
    _, with_rejection = run([event(renew("nope"), T0 + 90 * DAY)], state)
    from_json = state_from_dict(state_to_dict(state, include_processed=False))

    assert digest(state) == digest(with_rejection) == digest(from_json)
    assert len(digest(state)) == 64


def test_digest_changes_with_the_views(state: MemberState) -> None:
    decisions, after = run([event(acquire("l9", "d3", title="t3"))], state)
    assert isinstance(decisions[0], Accepted)
    assert digest(after) != digest(state)


def test_views_rebuilt_from_ledger_entries_equal_the_deciders_views(state: MemberState) -> None:
    events = [
        event(acquire("a1", "d1")),
        event(acquire("a2", "d2")),  # rejected: device limit 1
        event(renew("a1")),
        event(release("a1"), T0 + DAY),
    ]
    decisions, live = run(events)
    view_state = MemberState.empty("m1")
    for decision in decisions:
        if isinstance(decision, Accepted):
            for recorded in decision.recorded:
                view_state = evolve(view_state, recorded)
    assert digest(view_state) == digest(live)
    assert summary(view_state, T0) == summary(live, T0)
