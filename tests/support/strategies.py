"""Hypothesis strategies shared by the property tests: one member's event stream with small id
alphabets and limits, so that every rule is hit (times cross a month and a year boundary, some
events arrive late, some are redelivered), and policies over the same ids."""
from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from app.domain import (
    KEEP,
    DeviceDeactivated,
    DownloadEvent,
    LicenseAcquired,
    LicenseReleased,
    LicenseRenewed,
    PlanChanged,
    PlanLimits,
    Policy,
    StudioLimits,
    TitleLimits,
)

HOUR = 3_600_000
START = 1_733_011_200_000  # 2024-12-01T00:00:00Z: streams cross into January 2025

small_limit = st.one_of(st.none(), st.integers(1, 3))
license_ids = st.sampled_from([f"l{i}" for i in range(8)])
devices = st.sampled_from(["d0", "d1", "d2"])

plans = st.builds(PlanChanged, st.sampled_from(["basic", "plus"]), st.integers(1, 3), st.integers(1, 3), small_limit)
acquisitions = st.builds(
    LicenseAcquired,
    license_ids,
    devices,
    st.sampled_from(["t0", "t1", "t2"]),
    st.sampled_from(["s0", "s1"]),
    st.just(0),  # expires_at: set relative to the event time below
    small_limit,
    small_limit,
    st.one_of(st.none(), st.integers(0, 2)),
    st.one_of(st.none(), st.sampled_from(["SD", "HD"])),
)
renewals = st.builds(LicenseRenewed, license_ids, st.just(0))
releases = st.builds(LicenseReleased, license_ids, st.sampled_from(["DELETED", "EXPIRED", "REVOKED"]))
deactivations = st.builds(DeviceDeactivated, devices)
# weighted towards acquisitions and renewals, which most rules are about
payloads = st.one_of(plans, acquisitions, acquisitions, acquisitions, renewals, renewals, releases, deactivations)


@st.composite
def streams(draw, member: str = "m1", max_events: int = 40) -> list[DownloadEvent]:
    """One member's input events in partition order, redeliveries (duplicates) and late events included."""
    events: list[DownloadEvent] = []
    acquired: list[str] = []
    now = START
    for _ in range(draw(st.integers(0, max_events))):
        if events and draw(st.integers(0, 9)) == 0:
            events.append(draw(st.sampled_from(events)))  # redelivery
            continue
        now += draw(st.integers(0, 96)) * HOUR
        occurred_at = now - draw(st.sampled_from([0, 0, 0, 0, 30 * 24])) * HOUR  # sometimes late
        payload = draw(payloads)
        changes = {}
        if isinstance(payload, LicenseAcquired | LicenseRenewed):
            changes["expires_at"] = occurred_at + draw(st.integers(-24, 30 * 24)) * HOUR
        if isinstance(payload, LicenseRenewed | LicenseReleased) and acquired and draw(st.integers(0, 4)):
            changes["license_id"] = draw(st.sampled_from(acquired))  # mostly a license that exists
        if changes:
            payload = replace(payload, **changes)
        if isinstance(payload, LicenseAcquired):
            acquired.append(payload.license_id)
        event_id = f"e{len(events)}" if draw(st.integers(0, 19)) else f"e{draw(st.integers(0, 5))}"
        events.append(DownloadEvent(event_id, member, occurred_at, "prop", payload))
    return events


def _override(values):
    return st.one_of(st.just(KEEP), values)


plan_limits = st.builds(PlanLimits, _override(st.integers(1, 3)), _override(st.integers(1, 3)),
                        _override(small_limit))
title_limits = st.builds(TitleLimits, _override(small_limit), _override(st.one_of(st.none(), st.integers(0, 2))))
studio_limits = st.builds(StudioLimits, _override(small_limit))


@st.composite
def policies(draw) -> Policy:
    """A policy over the ids `streams` uses: plans basic, plus and the default one, titles t0-t2,
    studios s0-s1; each limit kept, set or lifted (None)."""
    default_plan = draw(st.one_of(st.none(), plan_limits))
    plan_ids = ["basic", "plus"] + ([] if default_plan is not None else ["default"])
    return Policy(
        plans=draw(st.dictionaries(st.sampled_from(plan_ids), plan_limits, max_size=3)),
        default_plan=default_plan,
        titles=draw(st.dictionaries(st.sampled_from(["t0", "t1", "t2"]), title_limits, max_size=3)),
        studios=draw(st.dictionaries(st.sampled_from(["s0", "s1"]), studio_limits, max_size=2)),
    )
