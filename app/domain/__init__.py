"""The pure domain of DOMAIN.md: events, member state, rules, policies, decider and views.

Standard library only; nothing here does I/O or reads the wall clock.
"""

from app.domain.decide import Accepted, Decision, Duplicate, Rejected, decide, evolve, record_rejection, step
from app.domain.events import (
    DeviceDeactivated,
    DownloadEvent,
    LicenseAcquired,
    LicenseReleased,
    LicenseRenewed,
    Payload,
    PlanChanged,
    Recorded,
)
from app.domain.policy import EMPTY, KEEP, PlanLimits, Policy, StudioLimits, TitleLimits
from app.domain.rules import Reason
from app.domain.state import DEFAULT_PLAN, PROCESSED_IDS_BOUND, License, MemberState, Plan
from app.domain.state_json import state_from_dict, state_to_dict
from app.domain.validation import MalformedEvent, validate

__all__ = [
    "DEFAULT_PLAN",
    "EMPTY",
    "KEEP",
    "PROCESSED_IDS_BOUND",
    "Accepted",
    "Decision",
    "DeviceDeactivated",
    "DownloadEvent",
    "Duplicate",
    "License",
    "LicenseAcquired",
    "LicenseReleased",
    "LicenseRenewed",
    "MalformedEvent",
    "MemberState",
    "Payload",
    "Plan",
    "PlanChanged",
    "PlanLimits",
    "Policy",
    "Reason",
    "Recorded",
    "Rejected",
    "StudioLimits",
    "TitleLimits",
    "decide",
    "evolve",
    "record_rejection",
    "state_from_dict",
    "state_to_dict",
    "step",
    "validate",
]
