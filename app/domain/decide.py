"""The decider: pure functions from (state, event) to a decision and from a decision to the next state.

`decide` never mutates and never reads the wall clock; `evolve` and `record_rejection` are the only
ways a state changes, so folding the durable history through them rebuilds the live state exactly.
A `Policy` overrides limits at decision time only (the live decider passes none: `EMPTY`), so
`evolve` needs none: an accepted event changes the state the same way under every policy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from app.domain.events import (
    DeviceDeactivated,
    DownloadEvent,
    LicenseAcquired,
    LicenseReleased,
    LicenseRenewed,
    PlanChanged,
    Recorded,
)
from app.domain.policy import EMPTY, Policy
from app.domain.rules import Reason, check
from app.domain.state import License, MemberState, Plan
from app.domain.utc import year_month


@dataclass(frozen=True, slots=True)
class Accepted:
    recorded: tuple[Recorded, ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str
    clock: int


@dataclass(frozen=True, slots=True)
class Duplicate:
    pass


Decision = Accepted | Rejected | Duplicate


def decide(state: MemberState, event: DownloadEvent, policy: Policy = EMPTY) -> Decision:
    _same_member(state, event)
    if event.event_id in state.processed:
        return Duplicate()
    t = max(state.clock, event.occurred_at)
    violation = check(state, event.payload, t, policy)
    if violation is not None:
        return Rejected(violation.reason, violation.detail, t)
    return Accepted((Recorded(seq=state.seq + 1, clock=t, event=event),))


def evolve(state: MemberState, recorded: Recorded) -> MemberState:
    """Apply an accepted event; `recorded.seq` must be the next seq of the member."""
    event = recorded.event
    _same_member(state, event)
    if recorded.seq != state.seq + 1:
        raise ValueError(f"member {state.member_id}: recorded seq {recorded.seq} does not follow seq {state.seq}")
    changes = _apply(state, event.payload, recorded.clock)
    return replace(
        state,
        seq=recorded.seq,
        clock=max(state.clock, recorded.clock),
        processed=state.processed.add(event.event_id),
        rejections_since_seq=0,
        **changes,
    )


def record_rejection(state: MemberState, event: DownloadEvent, clock: int) -> MemberState:
    _same_member(state, event)
    return replace(
        state,
        clock=max(state.clock, clock),
        processed=state.processed.add(event.event_id),
        rejections_since_seq=state.rejections_since_seq + 1,
    )


def step(state: MemberState, event: DownloadEvent, policy: Policy = EMPTY) -> tuple[Decision, MemberState]:
    decision = decide(state, event, policy)
    match decision:
        case Accepted(recorded):
            for entry in recorded:
                state = evolve(state, entry)
        case Rejected(clock=clock):
            state = record_rejection(state, event, clock)
    return decision, state


def _apply(state: MemberState, payload: object, clock: int) -> dict[str, Any]:
    match payload:
        case PlanChanged():
            plan = Plan(payload.plan_id, payload.device_limit, payload.downloads_per_device, payload.monthly_limit)
            return {"plan": plan}
        case LicenseAcquired():
            lic = License(
                license_id=payload.license_id,
                device_id=payload.device_id,
                title_id=payload.title_id,
                studio_id=payload.studio_id,
                expires_at=payload.expires_at,
                renewals=0,
                max_renewals=payload.max_renewals,
                title_yearly_limit=payload.title_yearly_limit,
                studio_concurrent_limit=payload.studio_concurrent_limit,
                released=False,
            )
            licenses = {**state.licenses, lic.license_id: lic}
            return {"licenses": licenses, **_count_download(state, lic.title_id, clock)}
        case LicenseRenewed():
            lic = _known(state, payload.license_id)
            renewed = replace(lic, expires_at=payload.expires_at, renewals=lic.renewals + 1)
            licenses = {**state.licenses, lic.license_id: renewed}
            return {"licenses": licenses, **_count_download(state, lic.title_id, clock)}
        case LicenseReleased():
            lic = _known(state, payload.license_id)
            return {"licenses": {**state.licenses, lic.license_id: replace(lic, released=True)}}
        case DeviceDeactivated():
            released = {
                lic.license_id: replace(lic, released=True)
                for lic in state.licenses.values()
                if lic.device_id == payload.device_id and not lic.released
            }
            return {"licenses": {**state.licenses, **released}} if released else {}
    raise TypeError(f"not a payload: {type(payload).__name__}")


def _count_download(state: MemberState, title_id: str, clock: int) -> dict[str, Any]:
    year, month = year_month(clock)
    title_key = (title_id, year)
    month_key = (year, month)
    return {
        "title_year_downloads": {
            **state.title_year_downloads,
            title_key: state.title_downloads(title_id, year) + 1,
        },
        "month_downloads": {**state.month_downloads, month_key: state.downloads_in_month(year, month) + 1},
    }


def _known(state: MemberState, license_id: str) -> License:
    lic = state.licenses.get(license_id)
    if lic is None:
        raise ValueError(f"member {state.member_id}: recorded event refers to unknown license {license_id}")
    return lic


def _same_member(state: MemberState, event: DownloadEvent) -> None:
    if event.member_id != state.member_id:
        raise ValueError(f"event {event.event_id} of member {event.member_id} applied to member {state.member_id}")
