"""One named case per rule and rejection reason of DOMAIN.md "Decisions", in its order of checks.

Each case: a history (every event of it must be accepted), then the event under test, and the
expected outcome: None for accepted, else the rejection reason (and a fragment of the detail).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from app.domain import Accepted, Rejected, decide
from app.domain.rules import Reason
from tests.support.domain_builders import DAY, T0, acquire, deactivate, event, plan, release, renew, run

DEC_31 = 1_735_603_200_000  # 2024-12-31T00:00:00Z
JAN_1 = DEC_31 + DAY  # 2025-01-01
JAN_31 = 1_706_659_200_000  # 2024-01-31T00:00:00Z
FEB_1 = JAN_31 + DAY


@dataclass
class Case:
    history: list = field(default_factory=list)  # payloads (at T0) or (payload, at)
    probe: object = None  # payload (at T0) or (payload, at)
    reason: Reason | None = None
    detail: str | None = None


def _timed(item):
    return item if isinstance(item, tuple) else (item, T0)


CASES = {
    # --- PlanChanged / DeviceDeactivated: always accepted
    "PlanChanged-accepted": Case([], plan(device_limit=3)),
    "PlanChanged-downgrade-accepted-with-licenses-over-the-new-limit": Case(
        [plan(device_limit=2), acquire("l1", "d1"), acquire("l2", "d2")], plan(device_limit=1)
    ),
    "DeviceDeactivated-accepted-for-unknown-device": Case([], deactivate("nowhere")),
    # --- LicenseAcquired, in order of checks
    "LicenseAcquired-accepted": Case([], acquire()),
    "LicenseAcquired-1-LICENSE_ID_CONFLICT": Case(
        [acquire("l1", "d1")], acquire("l1", "d1", title="t2"), Reason.LICENSE_ID_CONFLICT, "license l1 already exists"
    ),
    "LicenseAcquired-1-LICENSE_ID_CONFLICT-even-if-released": Case(
        [acquire("l1"), release("l1")], acquire("l1"), Reason.LICENSE_ID_CONFLICT
    ),
    "LicenseAcquired-2-ALREADY_EXPIRED-expires-at-clock": Case([], acquire(expires=T0), Reason.ALREADY_EXPIRED),
    "LicenseAcquired-2-ALREADY_EXPIRED-by-member-clock-of-late-event": Case(
        [(plan(), T0 + 10 * DAY)], (acquire(expires=T0 + 5 * DAY), T0), Reason.ALREADY_EXPIRED
    ),
    "LicenseAcquired-3-DEVICE_LIMIT-default-plan": Case(
        [acquire("l1", "d1")], acquire("l2", "d2"), Reason.DEVICE_LIMIT, "device limit 1 reached: devices in use d1"
    ),
    "LicenseAcquired-3-DEVICE_LIMIT-names-devices": Case(
        [plan(device_limit=2), acquire("l1", "d2"), acquire("l2", "d1")],
        acquire("l3", "d3"),
        Reason.DEVICE_LIMIT,
        "device limit 2 reached: devices in use d1, d2",
    ),
    "LicenseAcquired-3-device-in-use-is-not-a-new-device": Case([acquire("l1", "d1")], acquire("l2", "d1")),
    "LicenseAcquired-3-expired-license-frees-its-device": Case(
        [acquire("l1", "d1", expires=T0 + DAY)], (acquire("l2", "d2", expires=T0 + 9 * DAY), T0 + 2 * DAY)
    ),
    "LicenseAcquired-3-released-license-frees-its-device": Case([acquire("l1", "d1"), release("l1")], acquire("l2", "d2")),
    "LicenseAcquired-3-deactivated-device-is-free": Case([acquire("l1", "d1"), deactivate("d1")], acquire("l2", "d2")),
    "LicenseAcquired-4-DEVICE_DOWNLOAD_LIMIT": Case(
        [plan(downloads_per_device=2), acquire("l1"), acquire("l2")],
        acquire("l3"),
        Reason.DEVICE_DOWNLOAD_LIMIT,
        "downloads per device limit 2 reached: device d1 holds 2 active licenses",
    ),
    "LicenseAcquired-4-expired-licenses-do-not-count": Case(
        [plan(downloads_per_device=1), acquire("l1", expires=T0 + DAY)], (acquire("l2", expires=T0 + 9 * DAY), T0 + DAY)
    ),
    "LicenseAcquired-5-TITLE_YEARLY_LIMIT": Case(
        [acquire("l1", title="t1"), acquire("l2", title="t1")],
        acquire("l3", title="t1", title_yearly_limit=2),
        Reason.TITLE_YEARLY_LIMIT,
        "title t1 downloaded 2 times in 2024",
    ),
    "LicenseAcquired-5-TITLE_YEARLY_LIMIT-counts-released-downloads": Case(
        [acquire("l1", title="t1"), release("l1")], acquire("l2", title="t1", title_yearly_limit=1), Reason.TITLE_YEARLY_LIMIT
    ),
    "LicenseAcquired-5-title-year-is-the-calendar-year-of-the-clock": Case(
        [(acquire("l1", title="t1", expires=DEC_31 + 5 * DAY), DEC_31)],
        (acquire("l2", title="t1", title_yearly_limit=1, expires=JAN_1 + DAY), JAN_1),
    ),
    "LicenseAcquired-5-other-titles-do-not-count": Case([acquire("l1", title="t1")], acquire("l2", title="t2", title_yearly_limit=1)),
    "LicenseAcquired-6-STUDIO_CONCURRENT_LIMIT": Case(
        [acquire("l1", studio="s1"), acquire("l2", studio="s1", title="t2")],
        acquire("l3", studio="s1", title="t3", studio_concurrent_limit=2),
        Reason.STUDIO_CONCURRENT_LIMIT,
        "studio s1 has 2 active licenses",
    ),
    "LicenseAcquired-6-released-licenses-do-not-count": Case(
        [acquire("l1", studio="s1"), release("l1")], acquire("l2", studio="s1", studio_concurrent_limit=1)
    ),
    "LicenseAcquired-7-MONTHLY_LIMIT": Case(
        [plan(monthly_limit=2), acquire("l1"), acquire("l2", title="t2")],
        acquire("l3", title="t3"),
        Reason.MONTHLY_LIMIT,
        "monthly limit 2 of plan p1 reached: 2 downloads in 2024-06",
    ),
    "LicenseAcquired-7-month-is-the-calendar-month-of-the-clock": Case(
        [(plan(monthly_limit=1), JAN_31), (acquire("l1", expires=JAN_31 + 9 * DAY), JAN_31)],
        (acquire("l2", expires=FEB_1 + 9 * DAY), FEB_1),
    ),
    "LicenseAcquired-7-late-event-counts-in-the-month-of-the-clock": Case(
        [(plan(monthly_limit=1), FEB_1), (acquire("l1", expires=FEB_1 + 9 * DAY), FEB_1)],
        (acquire("l2", expires=FEB_1 + 9 * DAY), JAN_31),
        Reason.MONTHLY_LIMIT,
        "in 2024-02",
    ),
    "LicenseAcquired-order-1-before-2-conflict-before-expired": Case(
        [acquire("l1")], acquire("l1", expires=T0), Reason.LICENSE_ID_CONFLICT
    ),
    "LicenseAcquired-order-2-before-3-expired-before-device-limit": Case(
        [acquire("l1", "d1")], acquire("l2", "d2", expires=T0), Reason.ALREADY_EXPIRED
    ),
    "LicenseAcquired-order-3-before-5-device-limit-before-title-limit": Case(
        [acquire("l1", "d1", title="t1")], acquire("l2", "d2", title="t1", title_yearly_limit=1), Reason.DEVICE_LIMIT
    ),
    "LicenseAcquired-order-4-before-5-device-downloads-before-title-limit": Case(
        [plan(downloads_per_device=1), acquire("l1", title="t1")],
        acquire("l2", title="t1", title_yearly_limit=1),
        Reason.DEVICE_DOWNLOAD_LIMIT,
    ),
    "LicenseAcquired-order-5-before-6-title-before-studio": Case(
        [acquire("l1", title="t1", studio="s1")],
        acquire("l2", title="t1", studio="s1", title_yearly_limit=1, studio_concurrent_limit=1),
        Reason.TITLE_YEARLY_LIMIT,
    ),
    "LicenseAcquired-order-6-before-7-studio-before-monthly": Case(
        [plan(monthly_limit=1), acquire("l1", studio="s1")],
        acquire("l2", title="t2", studio="s1", studio_concurrent_limit=1),
        Reason.STUDIO_CONCURRENT_LIMIT,
    ),
    "LicenseAcquired-plan-downgrade-limits-new-licenses": Case(
        [plan(device_limit=2), acquire("l1", "d1"), acquire("l2", "d2"), plan(device_limit=1)],
        acquire("l3", "d3"),
        Reason.DEVICE_LIMIT,
        "device limit 1 reached: devices in use d1, d2",
    ),
    "LicenseAcquired-plan-downgrade-still-allows-a-device-in-use": Case(
        [plan(device_limit=2), acquire("l1", "d1"), acquire("l2", "d2"), plan(device_limit=1)], acquire("l3", "d2")
    ),
    # --- LicenseRenewed, in order of checks
    "LicenseRenewed-accepted": Case([acquire("l1")], renew("l1")),
    "LicenseRenewed-1-UNKNOWN_LICENSE": Case([], renew("nope"), Reason.UNKNOWN_LICENSE, "license nope is unknown"),
    "LicenseRenewed-2-LICENSE_RELEASED": Case([acquire("l1"), release("l1")], renew("l1"), Reason.LICENSE_RELEASED),
    "LicenseRenewed-2-LICENSE_RELEASED-by-device-deactivation": Case(
        [acquire("l1", "d1"), deactivate("d1")], renew("l1"), Reason.LICENSE_RELEASED
    ),
    "LicenseRenewed-3-RENEWAL_LIMIT": Case(
        [acquire("l1", max_renewals=1), renew("l1")], renew("l1", T0 + 90 * DAY), Reason.RENEWAL_LIMIT,
        "license l1 renewed 1 times, max_renewals 1",
    ),
    "LicenseRenewed-3-RENEWAL_LIMIT-max-renewals-zero": Case(
        [acquire("l1", max_renewals=0)], renew("l1"), Reason.RENEWAL_LIMIT
    ),
    "LicenseRenewed-4-ALREADY_EXPIRED": Case(
        [acquire("l1")], (renew("l1", T0 + DAY), T0 + DAY), Reason.ALREADY_EXPIRED
    ),
    "LicenseRenewed-5-expired-license-renewed-when-there-is-room": Case(
        [acquire("l1", expires=T0 + DAY)], (renew("l1", T0 + 9 * DAY), T0 + 2 * DAY)
    ),
    "LicenseRenewed-5-DEVICE_LIMIT-renewing-an-expired-license": Case(
        [acquire("l1", "d1", expires=T0 + DAY), (acquire("l2", "d2", expires=T0 + 9 * DAY), T0 + 2 * DAY)],
        (renew("l1", T0 + 9 * DAY), T0 + 3 * DAY),
        Reason.DEVICE_LIMIT,
        "device limit 1 reached: devices in use d2",
    ),
    "LicenseRenewed-5-DEVICE_DOWNLOAD_LIMIT-renewing-an-expired-license": Case(
        [
            plan(downloads_per_device=1),
            acquire("l1", "d1", expires=T0 + DAY),
            (acquire("l2", "d1", title="t2", expires=T0 + 9 * DAY), T0 + 2 * DAY),
        ],
        (renew("l1", T0 + 9 * DAY), T0 + 3 * DAY),
        Reason.DEVICE_DOWNLOAD_LIMIT,
    ),
    "LicenseRenewed-5-STUDIO_CONCURRENT_LIMIT-renewing-an-expired-license": Case(
        [
            acquire("l1", studio="s1", studio_concurrent_limit=1, expires=T0 + DAY),
            (acquire("l2", studio="s1", title="t2", studio_concurrent_limit=1, expires=T0 + 9 * DAY), T0 + 2 * DAY),
        ],
        (renew("l1", T0 + 9 * DAY), T0 + 3 * DAY),
        Reason.STUDIO_CONCURRENT_LIMIT,
    ),
    "LicenseRenewed-5-active-license-is-not-rechecked-after-downgrade": Case(
        [plan(device_limit=2, downloads_per_device=5), acquire("l1", "d1"), acquire("l2", "d2"),
         plan(device_limit=1, downloads_per_device=1)],
        renew("l2"),
    ),
    "LicenseRenewed-6-TITLE_YEARLY_LIMIT-as-recorded-at-acquisition": Case(
        [acquire("l1", title="t1", title_yearly_limit=1)], renew("l1"), Reason.TITLE_YEARLY_LIMIT
    ),
    "LicenseRenewed-6-MONTHLY_LIMIT": Case([plan(monthly_limit=1), acquire("l1")], renew("l1"), Reason.MONTHLY_LIMIT),
    "LicenseRenewed-6-renewal-counts-toward-the-yearly-limit": Case(
        [acquire("l1", title="t1", title_yearly_limit=2), renew("l1")],
        acquire("l2", title="t1", title_yearly_limit=2),
        Reason.TITLE_YEARLY_LIMIT,
        "downloaded 2 times",
    ),
    "LicenseRenewed-6-renewal-counts-toward-the-monthly-limit": Case(
        [plan(monthly_limit=2), acquire("l1"), renew("l1")], acquire("l2", title="t2"), Reason.MONTHLY_LIMIT
    ),
    "LicenseRenewed-order-2-before-3-released-before-renewal-limit": Case(
        [acquire("l1", max_renewals=0), release("l1")], renew("l1"), Reason.LICENSE_RELEASED
    ),
    "LicenseRenewed-order-3-before-4-renewal-limit-before-expired": Case(
        [acquire("l1", max_renewals=0)], renew("l1", T0), Reason.RENEWAL_LIMIT
    ),
    "LicenseRenewed-order-4-before-5-expired-before-device-limit": Case(
        [acquire("l1", "d1", expires=T0 + DAY), (acquire("l2", "d2", expires=T0 + 9 * DAY), T0 + 2 * DAY)],
        (renew("l1", T0 + 3 * DAY), T0 + 3 * DAY),
        Reason.ALREADY_EXPIRED,
    ),
    "LicenseRenewed-order-5-before-6-device-limit-before-title-limit": Case(
        [acquire("l1", "d1", title_yearly_limit=1, expires=T0 + DAY),
         (acquire("l2", "d2", title="t2", expires=T0 + 9 * DAY), T0 + 2 * DAY)],
        (renew("l1", T0 + 9 * DAY), T0 + 3 * DAY),
        Reason.DEVICE_LIMIT,
    ),
    "LicenseRenewed-order-6-title-before-monthly": Case(
        [plan(monthly_limit=1), acquire("l1", title_yearly_limit=1)], renew("l1"), Reason.TITLE_YEARLY_LIMIT
    ),
    # --- LicenseReleased, in order of checks
    "LicenseReleased-accepted": Case([acquire("l1")], release("l1", "REVOKED")),
    "LicenseReleased-accepted-for-an-expired-license": Case(
        [acquire("l1", expires=T0 + DAY)], (release("l1", "EXPIRED"), T0 + 5 * DAY)
    ),
    "LicenseReleased-1-UNKNOWN_LICENSE": Case([], release("nope"), Reason.UNKNOWN_LICENSE),
    "LicenseReleased-2-LICENSE_RELEASED-re-release": Case(
        [acquire("l1"), release("l1")], release("l1"), Reason.LICENSE_RELEASED, "license l1 is already released"
    ),
    "LicenseReleased-2-LICENSE_RELEASED-after-device-deactivation": Case(
        [acquire("l1", "d1"), deactivate("d1")], release("l1"), Reason.LICENSE_RELEASED
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rule(case: Case) -> None:
    history = [event(*_timed(item)) for item in case.history]
    decisions, state = run(history)
    assert all(isinstance(d, Accepted) for d in decisions), f"history not accepted: {decisions}"

    decision = decide(state, event(*_timed(case.probe)))

    if case.reason is None:
        assert isinstance(decision, Accepted), decision
    else:
        assert isinstance(decision, Rejected), decision
        assert decision.reason == case.reason
        if case.detail:
            assert case.detail in decision.detail


def test_every_reason_has_a_case() -> None:
    covered = {case.reason for case in CASES.values()}
    assert covered - {None} == set(Reason)
