"""Is an event well-formed? (DOMAIN.md "Identifiers" and the field constraints of "Input events".)

A separate step before `decide`: a malformed event goes to the dead letters and never reaches a
member's state. Decoding (the Avro codec) and this check fail with different error types.
"""

from __future__ import annotations

import re

from app.domain.events import (
    RELEASE_REASONS,
    DeviceDeactivated,
    DownloadEvent,
    LicenseAcquired,
    LicenseReleased,
    LicenseRenewed,
    PlanChanged,
)
from app.domain.utc import format_ms

IDENTIFIER = re.compile(r"[A-Za-z0-9._:-]{1,64}")
INT_MAX = 2**31 - 1  # Avro "int": limits and counts
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1  # Avro "long": times


# Free text has a length limit too: a few hundred bytes is plenty for what these fields hold, and
# an event that carries a megabyte in one of them would make a ledger entry or rejection too large
# for Kafka (README "Validation limits").
PRODUCER_MAX_BYTES = 256  # UTF-8 bytes: free text, whatever the script
PLAN_ID_MAX_CHARS = 64  # like the identifiers
DOWNLOAD_QUALITY_MAX_CHARS = 32  # "SD", "HD", "UHD-HDR10+", ...
MAX_LENGTH = {  # field -> (limit, unit)
    "producer": (PRODUCER_MAX_BYTES, "bytes"),
    "PlanChanged.plan_id": (PLAN_ID_MAX_CHARS, "characters"),
    "LicenseAcquired.download_quality": (DOWNLOAD_QUALITY_MAX_CHARS, "characters"),
}


class MalformedEvent(Exception):
    """`code` is one of: missing_field, wrong_type, bad_identifier, out_of_range, unknown_reason,
    field_too_long (`validate`), clock_skew (`check_skew`), key_mismatch (the decider's check of the
    message key)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


# Field kinds: what each field of each payload must hold.
_ID, _TEXT, _TIME, _REASON = "id", "text", "time", "reason"
_OPTIONAL_TEXT = "optional text"
_AT_LEAST_1, _OPTIONAL_AT_LEAST_1, _OPTIONAL_AT_LEAST_0 = ">=1", "null or >=1", "null or >=0"

_ENVELOPE = {"event_id": _ID, "member_id": _ID, "occurred_at": _TIME, "producer": _TEXT}
PAYLOAD_FIELDS: dict[type, dict[str, str]] = {
    PlanChanged: {
        "plan_id": _TEXT,
        "device_limit": _AT_LEAST_1,
        "downloads_per_device": _AT_LEAST_1,
        "monthly_limit": _OPTIONAL_AT_LEAST_1,
    },
    LicenseAcquired: {
        "license_id": _ID,
        "device_id": _ID,
        "title_id": _ID,
        "studio_id": _ID,
        "expires_at": _TIME,
        "title_yearly_limit": _OPTIONAL_AT_LEAST_1,
        "studio_concurrent_limit": _OPTIONAL_AT_LEAST_1,
        "max_renewals": _OPTIONAL_AT_LEAST_0,
        "download_quality": _OPTIONAL_TEXT,
    },
    LicenseRenewed: {"license_id": _ID, "expires_at": _TIME},
    LicenseReleased: {"license_id": _ID, "reason": _REASON},
    DeviceDeactivated: {"device_id": _ID},
}
_OPTIONAL = {_OPTIONAL_TEXT, _OPTIONAL_AT_LEAST_1, _OPTIONAL_AT_LEAST_0}
_RANGES = {
    _TIME: (LONG_MIN, LONG_MAX),
    _AT_LEAST_1: (1, INT_MAX),
    _OPTIONAL_AT_LEAST_1: (1, INT_MAX),
    _OPTIONAL_AT_LEAST_0: (0, INT_MAX),
}


def validate(event: object) -> None:
    """Raise MalformedEvent naming the first problem; return None for a well-formed event."""
    if not isinstance(event, DownloadEvent):
        raise MalformedEvent("wrong_type", f"expected a DownloadEvent, got {type(event).__name__}")
    for name, kind in _ENVELOPE.items():
        _check_field(name, getattr(event, name), kind)
    payload = event.payload
    if payload is None:
        raise MalformedEvent("missing_field", "event payload is missing")
    kinds = PAYLOAD_FIELDS.get(type(payload))
    if kinds is None:
        raise MalformedEvent("wrong_type", f"unknown payload type {type(payload).__name__}")
    prefix = type(payload).__name__
    for name, kind in kinds.items():
        _check_field(f"{prefix}.{name}", getattr(payload, name), kind)


def _check_field(name: str, value: object, kind: str) -> None:
    if value is None:
        if kind in _OPTIONAL:
            return
        raise MalformedEvent("missing_field", f"{name} is missing")
    if kind in (_ID, _TEXT, _OPTIONAL_TEXT, _REASON):
        if not isinstance(value, str):
            raise MalformedEvent("wrong_type", f"{name} must be a string, got {type(value).__name__}")
        if kind == _ID and not IDENTIFIER.fullmatch(value):
            raise MalformedEvent(
                "bad_identifier", f"{name} {value!r} is not 1-64 characters from [A-Za-z0-9._:-]"
            )
        if kind == _REASON and value not in RELEASE_REASONS:
            raise MalformedEvent(
                "unknown_reason", f"{name} {value!r} is not one of {', '.join(RELEASE_REASONS)}"
            )
        if name in MAX_LENGTH:
            _check_length(name, value)
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedEvent("wrong_type", f"{name} must be an integer, got {type(value).__name__}")
    low, high = _RANGES[kind]
    if not low <= value <= high:
        raise MalformedEvent("out_of_range", f"{name} {value} is outside {low}..{high}")


def check_skew(event: DownloadEvent, message_timestamp_ms: int | None, max_skew_ms: int) -> None:
    """Raise MalformedEvent("clock_skew") when `occurred_at` is more than `max_skew_ms` after the
    timestamp of the message that carried the event (DOMAIN.md "Future skew guard").

    A producer whose clock runs far ahead would otherwise push the member clock forward for good,
    and every later event of that member would look expired. The message timestamp is stored with
    the message, so a redelivery or a replay makes the same call. No check when the message has no
    timestamp (None) or when `max_skew_ms` is 0. Call after `validate` (occurred_at is an int).
    """
    if message_timestamp_ms is None or max_skew_ms == 0:
        return
    skew = event.occurred_at - message_timestamp_ms
    if skew <= max_skew_ms:
        return
    ahead, limit = _duration(skew), _duration(max_skew_ms)
    if ahead == limit:  # rounded alike: show the milliseconds
        ahead, limit = f"{skew} ms", f"{max_skew_ms} ms"
    raise MalformedEvent(
        "clock_skew",
        f"occurred_at {format_ms(event.occurred_at)} is {ahead} after the message timestamp "
        f"{format_ms(message_timestamp_ms)}; limit {limit}",
    )


_UNITS = ((86_400_000, "days"), (3_600_000, "h"), (60_000, "min"), (1_000, "s"))


def _duration(ms: int) -> str:
    """A positive duration with two significant digits at most, e.g. "5.2 days", "1 h", "90 ms"."""
    for size, unit in _UNITS:
        if ms >= size:
            value = ms / size
            text = f"{value:.2g}" if value < 100 else str(round(value))
            return f"{text} {'day' if text == '1' and unit == 'days' else unit}"
    return f"{ms} ms"


def _check_length(name: str, value: str) -> None:
    limit, unit = MAX_LENGTH[name]
    length = len(value.encode()) if unit == "bytes" else len(value)
    if length > limit:
        raise MalformedEvent(
            "field_too_long", f"{name} is {length} {unit}, more than {limit}: {value[:40]!r}..."
        )
