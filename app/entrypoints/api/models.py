"""Request and response bodies of the read API (pydantic), so /openapi.json documents every answer."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.adapters.policy_file import PolicyModel
from app.domain.rules import Reason
from app.domain.utc import year_of
from app.domain.validation import DOWNLOAD_QUALITY_MAX_CHARS, INT_MAX, LONG_MAX, LONG_MIN

# DOMAIN.md "Identifiers". Also the OpenAPI pattern of every identifier parameter.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
# Times the API accepts: the integers a JSON number holds exactly (about +-285,000 years), a subset of
# the Avro long of the events; beyond it, JSON tooling (JavaScript, schema fuzzers) rounds silently.
TIME_MIN, TIME_MAX = -(2**53 - 1), 2**53 - 1
# Years reachable from an Avro long of epoch milliseconds (the member clock's range).
YEAR_MIN, YEAR_MAX = year_of(LONG_MIN), year_of(LONG_MAX)


def _integral_float(value):
    """JSON Schema counts 5.0 as an integer: accept it, while strict mode still refuses "5", true and 5.5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def json_int(low: int, high: int, description: str | None = None):
    """A bounded JSON integer for a strict body: no strings or booleans coerced, integral floats accepted."""
    return Annotated[int, Field(ge=low, le=high, description=description), BeforeValidator(_integral_float)]


Identifier = Annotated[str, Field(pattern=ID_PATTERN, min_length=1, max_length=64)]
EpochMs = json_int(TIME_MIN, TIME_MAX, "milliseconds since the epoch, UTC")
LicenseState = Literal["active", "expired", "released"]
AcquireReason = Literal[
    Reason.LICENSE_ID_CONFLICT.value,
    Reason.ALREADY_EXPIRED.value,
    Reason.DEVICE_LIMIT.value,
    Reason.DEVICE_DOWNLOAD_LIMIT.value,
    Reason.TITLE_YEARLY_LIMIT.value,
    Reason.STUDIO_CONCURRENT_LIMIT.value,
    Reason.MONTHLY_LIMIT.value,
]


class ErrorDetail(BaseModel):
    location: str = Field(description="where the problem is, e.g. path.member_id or body.expires_at")
    message: str


class Error(BaseModel):
    code: str = Field(description="machine-readable, e.g. validation_error, unauthorized, member_not_found")
    message: str
    details: list[ErrorDetail] | None = Field(None, description="validation errors only: one entry per problem")


class ErrorBody(BaseModel):
    error: Error


class Plan(BaseModel):
    plan_id: str
    device_limit: int
    downloads_per_device: int
    monthly_limit: int | None = Field(description="null: unlimited")


class MemberSummary(BaseModel):
    member_id: str
    at: int = Field(description="the time the summary is evaluated at (epoch ms)")
    seq: int = Field(description="seq of the last ledger entry the view reflects")
    plan: Plan
    devices_in_use: int
    active_downloads: int
    active_by_device: dict[str, int] = Field(description="device_id -> licenses active on it at `at`")
    month: str = Field(description="calendar month of `at` (UTC), YYYY-MM")
    month_downloads: int = Field(description="downloads (acquisitions + renewals) of the member in `month`")


class LicenseView(BaseModel):
    license_id: str
    device_id: str
    title_id: str
    studio_id: str
    expires_at: int
    renewals: int
    max_renewals: int | None
    state: LicenseState = Field(description="state at `at`")


class MemberLicenses(BaseModel):
    member_id: str
    at: int
    seq: int
    state: LicenseState | None = Field(description="the filter applied; null: all licenses")
    licenses: list[LicenseView]


class TitleDownloads(BaseModel):
    member_id: str
    title_id: str
    year: int
    downloads: int = Field(description="acquisitions + renewals of the title by the member in `year` (UTC)")
    seq: int


class EligibilityRequest(BaseModel):
    """A would-be LicenseAcquired (DOMAIN.md "Input events")."""

    model_config = ConfigDict(strict=True, extra="forbid")

    license_id: Identifier | None = Field(None, description="default: a fresh generated id", examples=["l-9"])
    device_id: Identifier = Field(examples=["d-1"])
    title_id: Identifier = Field(examples=["t-1"])
    studio_id: Identifier = Field(examples=["s-1"])
    expires_at: EpochMs
    title_yearly_limit: json_int(1, INT_MAX) | None = Field(None, description="null: unlimited")
    studio_concurrent_limit: json_int(1, INT_MAX) | None = Field(None, description="null: unlimited")
    max_renewals: json_int(0, INT_MAX) | None = Field(None, description="null: unlimited")
    download_quality: str | None = Field(None, max_length=DOWNLOAD_QUALITY_MAX_CHARS,
                                         description="the decider dead-letters a longer one (field_too_long)")
    at: EpochMs | None = Field(None, description="evaluate at this time (default: now); "
                                                  "the member clock applies when it is later")


class EligibilityResponse(BaseModel):
    member_id: str
    license_id: str
    at: int = Field(description="the time the rules ran at: max(requested at, member clock)")
    seq: int = Field(description="seq of the view the answer is based on; 0 for an unknown member")
    eligible: bool
    reason: AcquireReason | None = Field(description="the first rule that fails (DOMAIN.md order); null if eligible")
    detail: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    namespace: str
    members: int


# --- the timeline: history and what-if (read from the event store) ----------------------------

EventType = Literal["PlanChanged", "LicenseAcquired", "LicenseRenewed", "LicenseReleased", "DeviceDeactivated"]
Outcome = Literal["accepted", "rejected"]
HISTORY_LIMIT_MAX = 1_000
FLIPS_MAX = 1_000


class Source(BaseModel):
    topic: str
    partition: int
    offset: int


class HistoryEvent(BaseModel):
    seq: int = Field(description="the member's seq after this decision; with sub, the position in the event store")
    sub: int = Field(description="0 for an accepted event; n >= 1 for the n-th rejection decided after `seq`")
    outcome: Outcome
    reason: str | None = Field(description="the rejection's reason code (DOMAIN.md); null if accepted")
    detail: str | None = Field(description="the rejection's sentence with the actual numbers; null if accepted")
    type: EventType
    event_id: str
    occurred_at: int
    producer: str
    clock: int = Field(description="the member clock at decision (epoch ms)")
    payload: dict[str, int | str | None] = Field(description="the event's fields, as published")
    source: Source = Field(description="where the decider read the event")


class Cursor(BaseModel):
    after_seq: int
    after_sub: int


class MemberHistory(BaseModel):
    member_id: str
    events: list[HistoryEvent] = Field(description="decided events in decision order: (seq, sub)")
    next: Cursor | None = Field(description="pass as after_seq/after_sub for the next page; null at the end")


class WhatIfRequest(BaseModel):
    """A candidate policy, and optionally the window it applies to and the time to compare at."""

    model_config = ConfigDict(strict=True, extra="forbid")

    policy: PolicyModel
    from_ms: EpochMs | None = Field(None, description="the policy takes effect at this member clock: "
                                                      "decisions before it keep their recorded outcome")
    to_ms: EpochMs | None = Field(None, description="decisions at or after this member clock are not read "
                                                    "(at or before from_ms: nothing is re-decided)")
    at: EpochMs | None = Field(None, description="compare the summaries at this time "
                                                 "(default: the member clock after its last decision read)")
    max_flips: json_int(0, FLIPS_MAX) = Field(100, description="flipped events listed (all are counted)")


class DecisionOutcome(BaseModel):
    outcome: Outcome
    reason: str | None
    detail: str | None


class FlippedEvent(BaseModel):
    seq: int
    sub: int
    event_id: str
    type: EventType
    occurred_at: int
    clock: int
    recorded: DecisionOutcome = Field(description="the outcome in the event store")
    whatif: DecisionOutcome = Field(description="the outcome under the policy")


class Transition(BaseModel):
    recorded: str = Field(description="`accepted` or the recorded reason")
    whatif: str = Field(description="`accepted` or the reason under the policy")
    count: int


class MemberWhatIf(BaseModel):
    member_id: str
    events_redecided: int
    flip_count: int
    transitions: list[Transition]
    flips: list[FlippedEvent] = Field(description="the first max_flips flipped events, in decision order")
    at: int = Field(description="the time both summaries are evaluated at")
    today: MemberSummary = Field(description="the summary of the member's history as decided")
    under_policy: MemberSummary = Field(description="the summary had the policy decided its events")
