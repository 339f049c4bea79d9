"""Terse builders for domain events in unit tests."""

from __future__ import annotations

import itertools

from app.domain import (
    DeviceDeactivated,
    DownloadEvent,
    LicenseAcquired,
    LicenseReleased,
    LicenseRenewed,
    MemberState,
    Payload,
    PlanChanged,
    step,
)

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z
MEMBER = "m1"

_ids = itertools.count(1)


def event(payload: Payload, at: int = T0, event_id: str | None = None, member: str = MEMBER) -> DownloadEvent:
    return DownloadEvent(
        event_id=event_id or f"e{next(_ids)}",
        member_id=member,
        occurred_at=at,
        producer="unit-test",
        payload=payload,
    )


def plan(device_limit=1, downloads_per_device=100, monthly_limit=None, plan_id="p1") -> PlanChanged:
    return PlanChanged(plan_id, device_limit, downloads_per_device, monthly_limit)


def acquire(
    license_id="l1",
    device="d1",
    title="t1",
    studio="s1",
    expires=T0 + 30 * DAY,
    title_yearly_limit=None,
    studio_concurrent_limit=None,
    max_renewals=None,
    quality=None,
) -> LicenseAcquired:
    return LicenseAcquired(
        license_id, device, title, studio, expires, title_yearly_limit, studio_concurrent_limit, max_renewals, quality
    )


def renew(license_id="l1", expires=T0 + 60 * DAY) -> LicenseRenewed:
    return LicenseRenewed(license_id, expires)


def release(license_id="l1", reason="DELETED") -> LicenseReleased:
    return LicenseReleased(license_id, reason)


def deactivate(device="d1") -> DeviceDeactivated:
    return DeviceDeactivated(device)


def run(events, state: MemberState | None = None):
    """Step through events; returns (decisions, final state)."""
    state = state or MemberState.empty(MEMBER)
    decisions = []
    for ev in events:
        decision, state = step(state, ev)
        decisions.append(decision)
    return decisions, state
