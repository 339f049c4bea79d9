"""Read models of DOMAIN.md "Views": pure functions of a member state and a time `at` (epoch ms).

Results are plain dicts / named tuples of JSON-safe values.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import replace
from typing import Any, NamedTuple

from app.domain.events import LicenseAcquired
from app.domain.policy import EMPTY, Policy
from app.domain.rules import check_acquire
from app.domain.state import MemberState, ProcessedIds
from app.domain.state_json import view_state_dict
from app.domain.utc import year_month

LICENSE_STATES = ("active", "expired", "released")


class Eligibility(NamedTuple):
    eligible: bool
    reason: str | None
    detail: str | None


def summary(state: MemberState, at: int, policy: Policy = EMPTY) -> dict[str, Any]:
    """The summary at ``at``; under a policy, the plan shows the limits the policy gives it."""
    active_by_device = Counter(lic.device_id for lic in state.active_licenses(at))
    year, month = year_month(at)
    plan = policy.plan(state.plan)
    return {
        "member_id": state.member_id,
        "at": at,
        "seq": state.seq,
        "plan": {
            "plan_id": plan.plan_id,
            "device_limit": plan.device_limit,
            "downloads_per_device": plan.downloads_per_device,
            "monthly_limit": plan.monthly_limit,
        },
        "devices_in_use": len(active_by_device),
        "active_downloads": sum(active_by_device.values()),
        "active_by_device": dict(sorted(active_by_device.items())),
        "month": f"{year:04d}-{month:02d}",
        "month_downloads": state.downloads_in_month(year, month),
    }


def licenses(state: MemberState, at: int, state_filter: str | None = None) -> list[dict[str, Any]]:
    if state_filter is not None and state_filter not in LICENSE_STATES:
        raise ValueError(f"state_filter must be one of {', '.join(LICENSE_STATES)}, got {state_filter!r}")
    result = []
    for license_id, lic in sorted(state.licenses.items()):
        lic_state = lic.state_at(at)
        if state_filter is None or lic_state == state_filter:
            result.append(
                {
                    "license_id": license_id,
                    "device_id": lic.device_id,
                    "title_id": lic.title_id,
                    "studio_id": lic.studio_id,
                    "expires_at": lic.expires_at,
                    "renewals": lic.renewals,
                    "max_renewals": lic.max_renewals,
                    "state": lic_state,
                }
            )
    return result


def title_year_count(state: MemberState, title_id: str, year: int) -> int:
    return state.title_downloads(title_id, year)


def eligibility(state: MemberState, payload: LicenseAcquired, at: int, policy: Policy = EMPTY) -> Eligibility:
    """Would this LicenseAcquired be accepted at `at`? The decider's own rule code decides."""
    violation = check_acquire(state, payload, max(state.clock, at), policy)
    if violation is None:
        return Eligibility(True, None, None)
    return Eligibility(False, str(violation.reason), violation.detail)


def digest(state: MemberState) -> str:
    """sha256 of the view-relevant state; equal for live and replayed projections of the same ledger."""
    canonical = json.dumps(view_state_dict(state), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


_NO_IDS = ProcessedIds()


def lean(state: MemberState, keep: int = 0) -> MemberState:
    """The state without its processed event ids once it carries more than ``keep``: views never
    read them (duplicates are the decider's business), so projections keep their states small."""
    return replace(state, processed=_NO_IDS) if len(state.processed) > keep else state
