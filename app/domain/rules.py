"""The checks of DOMAIN.md "Decisions", shared by the decider and the eligibility view.

Each `check_*` runs its rules in the order DOMAIN.md lists them and returns the first violation,
or None when the event would be accepted. `t` is the member clock already advanced by the event.
Every limit is looked up through a `Policy` (DOMAIN.md "Policies"); the default, `EMPTY`, keeps
the limits the events carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.domain.events import (
    DeviceDeactivated,
    LicenseAcquired,
    LicenseReleased,
    LicenseRenewed,
    Payload,
    PlanChanged,
)
from app.domain.policy import EMPTY, Policy
from app.domain.state import License, MemberState
from app.domain.utc import format_ms, year_month, year_of


class Reason(StrEnum):
    LICENSE_ID_CONFLICT = "LICENSE_ID_CONFLICT"
    ALREADY_EXPIRED = "ALREADY_EXPIRED"
    DEVICE_LIMIT = "DEVICE_LIMIT"
    DEVICE_DOWNLOAD_LIMIT = "DEVICE_DOWNLOAD_LIMIT"
    TITLE_YEARLY_LIMIT = "TITLE_YEARLY_LIMIT"
    STUDIO_CONCURRENT_LIMIT = "STUDIO_CONCURRENT_LIMIT"
    MONTHLY_LIMIT = "MONTHLY_LIMIT"
    UNKNOWN_LICENSE = "UNKNOWN_LICENSE"
    LICENSE_RELEASED = "LICENSE_RELEASED"
    RENEWAL_LIMIT = "RENEWAL_LIMIT"


@dataclass(frozen=True, slots=True)
class Violation:
    reason: Reason
    detail: str


def check(state: MemberState, payload: Payload, t: int, policy: Policy = EMPTY) -> Violation | None:
    match payload:
        case LicenseAcquired():
            return check_acquire(state, payload, t, policy)
        case LicenseRenewed():
            return check_renew(state, payload, t, policy)
        case LicenseReleased():
            return check_release(state, payload)
        case PlanChanged() | DeviceDeactivated():
            return None
    raise TypeError(f"not a payload: {type(payload).__name__}")


def check_acquire(state: MemberState, payload: LicenseAcquired, t: int, policy: Policy = EMPTY) -> Violation | None:
    known = state.licenses.get(payload.license_id)
    if known is not None:
        return Violation(
            Reason.LICENSE_ID_CONFLICT,
            f"license {payload.license_id} already exists (device {known.device_id}, title {known.title_id})",
        )
    plan = policy.plan(state.plan)
    return (
        _not_expired(payload.expires_at, t)
        or _device_limit(state, payload.device_id, t, plan.device_limit)
        or _device_download_limit(state, payload.device_id, t, plan.downloads_per_device)
        or _title_yearly_limit(state, payload.title_id,
                               policy.title_yearly_limit(payload.title_id, payload.title_yearly_limit), t)
        or _studio_concurrent_limit(state, payload.studio_id,
                                    policy.studio_concurrent_limit(payload.studio_id, payload.studio_concurrent_limit), t)
        or _monthly_limit(state, t, plan.plan_id, plan.monthly_limit)
    )


def check_renew(state: MemberState, payload: LicenseRenewed, t: int, policy: Policy = EMPTY) -> Violation | None:
    lic = state.licenses.get(payload.license_id)
    if lic is None:
        return _unknown(payload.license_id)
    if lic.released:
        return _released(lic)
    max_renewals = policy.max_renewals(lic.title_id, lic.max_renewals)
    if max_renewals is not None and lic.renewals >= max_renewals:
        return Violation(
            Reason.RENEWAL_LIMIT,
            f"license {lic.license_id} renewed {lic.renewals} times, max_renewals {max_renewals}",
        )
    plan = policy.plan(state.plan)
    violation = _not_expired(payload.expires_at, t)
    if violation is None and not lic.is_active(t):
        # Renewing an expired license re-activates it: it must fit the device and studio again.
        violation = (
            _device_limit(state, lic.device_id, t, plan.device_limit)
            or _device_download_limit(state, lic.device_id, t, plan.downloads_per_device)
            or _studio_concurrent_limit(state, lic.studio_id,
                                        policy.studio_concurrent_limit(lic.studio_id, lic.studio_concurrent_limit), t)
        )
    return (
        violation
        or _title_yearly_limit(state, lic.title_id, policy.title_yearly_limit(lic.title_id, lic.title_yearly_limit), t)
        or _monthly_limit(state, t, plan.plan_id, plan.monthly_limit)
    )


def check_release(state: MemberState, payload: LicenseReleased) -> Violation | None:
    lic = state.licenses.get(payload.license_id)
    if lic is None:
        return _unknown(payload.license_id)
    if lic.released:
        return _released(lic)
    return None


def _unknown(license_id: str) -> Violation:
    return Violation(Reason.UNKNOWN_LICENSE, f"license {license_id} is unknown for this member")


def _released(lic: License) -> Violation:
    return Violation(Reason.LICENSE_RELEASED, f"license {lic.license_id} is already released")


def _not_expired(expires_at: int, t: int) -> Violation | None:
    if expires_at <= t:
        return Violation(
            Reason.ALREADY_EXPIRED,
            f"expires_at {format_ms(expires_at)} is not after the member clock {format_ms(t)}",
        )
    return None


def _device_limit(state: MemberState, device_id: str, t: int, limit: int) -> Violation | None:
    in_use = state.devices_in_use(t)
    if device_id not in in_use and len(in_use) >= limit:
        return Violation(
            Reason.DEVICE_LIMIT,
            f"device limit {limit} reached: devices in use {', '.join(in_use)}",
        )
    return None


def _device_download_limit(state: MemberState, device_id: str, t: int, limit: int) -> Violation | None:
    active = state.active_on_device(device_id, t)
    if active >= limit:
        return Violation(
            Reason.DEVICE_DOWNLOAD_LIMIT,
            f"downloads per device limit {limit} reached: device {device_id} holds {active} active licenses",
        )
    return None


def _title_yearly_limit(state: MemberState, title_id: str, limit: int | None, t: int) -> Violation | None:
    if limit is None:
        return None
    year = year_of(t)
    count = state.title_downloads(title_id, year)
    if count >= limit:
        return Violation(
            Reason.TITLE_YEARLY_LIMIT,
            f"title yearly limit {limit} reached: title {title_id} downloaded {count} times in {year}",
        )
    return None


def _studio_concurrent_limit(state: MemberState, studio_id: str, limit: int | None, t: int) -> Violation | None:
    if limit is None:
        return None
    active = state.active_of_studio(studio_id, t)
    if active >= limit:
        return Violation(
            Reason.STUDIO_CONCURRENT_LIMIT,
            f"studio concurrent limit {limit} reached: studio {studio_id} has {active} active licenses",
        )
    return None


def _monthly_limit(state: MemberState, t: int, plan_id: str, limit: int | None) -> Violation | None:
    if limit is None:
        return None
    year, month = year_month(t)
    count = state.downloads_in_month(year, month)
    if count >= limit:
        return Violation(
            Reason.MONTHLY_LIMIT,
            f"monthly limit {limit} of plan {plan_id} reached: "
            f"{count} downloads in {year:04d}-{month:02d}",
        )
    return None
