"""MemberState <-> JSON-safe dict (plain str/int/bool/None/list/dict).

The same shape serves the Redis view state, the digest and the Avro snapshot (MemberSnapshot v2).
Lists are sorted, so equal states give equal dicts.
"""

from __future__ import annotations

from typing import Any

from app.domain.state import License, MemberState, Plan, ProcessedIds

_LICENSE_FIELDS = (
    "license_id",
    "device_id",
    "title_id",
    "studio_id",
    "expires_at",
    "renewals",
    "max_renewals",
    "title_yearly_limit",
    "studio_concurrent_limit",
    "released",
)


def state_to_dict(state: MemberState, include_processed: bool = True) -> dict[str, Any]:
    data = view_state_dict(state)
    data["clock"] = state.clock
    data["rejections_since_seq"] = state.rejections_since_seq
    if include_processed:
        data["processed_event_ids"] = list(state.processed)
    return data


def view_state_dict(state: MemberState) -> dict[str, Any]:
    """What the views read: no clock, no processed ids (the ledger alone determines these fields)."""
    plan = state.plan
    return {
        "member_id": state.member_id,
        "seq": state.seq,
        "plan": {
            "plan_id": plan.plan_id,
            "device_limit": plan.device_limit,
            "downloads_per_device": plan.downloads_per_device,
            "monthly_limit": plan.monthly_limit,
        },
        "licenses": [
            {name: getattr(lic, name) for name in _LICENSE_FIELDS}
            for _, lic in sorted(state.licenses.items())
        ],
        "title_year_downloads": [
            {"title_id": title_id, "year": year, "count": count}
            for (title_id, year), count in sorted(state.title_year_downloads.items())
        ],
        "month_downloads": [
            {"year": year, "month": month, "count": count}
            for (year, month), count in sorted(state.month_downloads.items())
        ],
    }


def state_from_dict(data: dict[str, Any]) -> MemberState:
    """Inverse of state_to_dict; clock, rejections_since_seq and processed ids are optional."""
    return MemberState(
        member_id=data["member_id"],
        plan=Plan(**data["plan"]),
        licenses={item["license_id"]: License(**item) for item in data["licenses"]},
        clock=data.get("clock", 0),
        seq=data["seq"],
        title_year_downloads={(c["title_id"], c["year"]): c["count"] for c in data["title_year_downloads"]},
        month_downloads={(c["year"], c["month"]): c["count"] for c in data["month_downloads"]},
        processed=ProcessedIds.of(data.get("processed_event_ids", ())),
        rejections_since_seq=data.get("rejections_since_seq", 0),
    )
