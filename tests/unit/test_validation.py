"""Malformed events (DOMAIN.md "Identifiers", field constraints): validate() raises MalformedEvent."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from app.domain import DownloadEvent, MalformedEvent, validate
from app.domain.events import PAYLOAD_TYPES
from app.domain.validation import PAYLOAD_FIELDS, check_skew
from tests.support.domain_builders import acquire, deactivate, event, plan, release, renew

GOOD = [event(plan(monthly_limit=3)), event(acquire(max_renewals=0, quality="HD")), event(renew()),
        event(release(reason="EXPIRED")), event(deactivate())]


@pytest.mark.parametrize("ev", GOOD, ids=lambda e: type(e.payload).__name__)
def test_well_formed_events_pass(ev: DownloadEvent) -> None:
    validate(ev)


def test_identifier_edges_pass() -> None:
    validate(event(acquire(license_id="a" * 64, device="A.b_c:d-9")))


def test_free_text_at_its_length_limit_passes() -> None:
    """producer: 256 bytes of UTF-8; plan_id: 64 characters; download_quality: 32 characters."""
    validate(replace(GOOD[0], producer="p" * 256))
    validate(replace(GOOD[0], producer="é" * 128))
    validate(_payload(GOOD[0], plan_id="é" * 64))
    validate(_payload(GOOD[1], download_quality="q" * 32))


def _payload(ev: DownloadEvent, **changes) -> DownloadEvent:
    return replace(ev, payload=replace(ev.payload, **changes))


BAD = {
    "event_id-empty": (replace(GOOD[0], event_id=""), "bad_identifier"),
    "event_id-65-chars": (replace(GOOD[0], event_id="e" * 65), "bad_identifier"),
    "member_id-space": (replace(GOOD[0], member_id="m 1"), "bad_identifier"),
    "member_id-trailing-newline": (replace(GOOD[0], member_id="m1\n"), "bad_identifier"),
    "member_id-slash": (replace(GOOD[0], member_id="m/1"), "bad_identifier"),
    "member_id-non-ascii": (replace(GOOD[0], member_id="mé"), "bad_identifier"),
    "device_id-bad": (_payload(GOOD[1], device_id="d#1"), "bad_identifier"),
    "title_id-bad": (_payload(GOOD[1], title_id="t 1"), "bad_identifier"),
    "studio_id-bad": (_payload(GOOD[1], studio_id=""), "bad_identifier"),
    "license_id-bad-on-renew": (_payload(GOOD[2], license_id="l?"), "bad_identifier"),
    "device_id-bad-on-deactivate": (_payload(GOOD[4], device_id="x" * 65), "bad_identifier"),
    "device_limit-0": (_payload(GOOD[0], device_limit=0), "out_of_range"),
    "downloads_per_device-0": (_payload(GOOD[0], downloads_per_device=0), "out_of_range"),
    "monthly_limit-0": (_payload(GOOD[0], monthly_limit=0), "out_of_range"),
    "device_limit-over-avro-int": (_payload(GOOD[0], device_limit=2**31), "out_of_range"),
    "title_yearly_limit-0": (_payload(GOOD[1], title_yearly_limit=0), "out_of_range"),
    "studio_concurrent_limit-0": (_payload(GOOD[1], studio_concurrent_limit=0), "out_of_range"),
    "max_renewals-negative": (_payload(GOOD[1], max_renewals=-1), "out_of_range"),
    "expires_at-over-avro-long": (_payload(GOOD[2], expires_at=2**63), "out_of_range"),
    "occurred_at-over-avro-long": (replace(GOOD[0], occurred_at=-(2**63) - 1), "out_of_range"),
    "release-reason-unknown": (_payload(GOOD[3], reason="LOST"), "unknown_reason"),
    "release-reason-lowercase": (_payload(GOOD[3], reason="deleted"), "unknown_reason"),
    "missing-event_id": (replace(GOOD[0], event_id=None), "missing_field"),
    "missing-producer": (replace(GOOD[0], producer=None), "missing_field"),
    "missing-occurred_at": (replace(GOOD[0], occurred_at=None), "missing_field"),
    "missing-payload": (replace(GOOD[0], payload=None), "missing_field"),
    "missing-plan_id": (_payload(GOOD[0], plan_id=None), "missing_field"),
    "missing-device_limit": (_payload(GOOD[0], device_limit=None), "missing_field"),
    "missing-expires_at": (_payload(GOOD[1], expires_at=None), "missing_field"),
    "missing-reason": (_payload(GOOD[3], reason=None), "missing_field"),
    "wrong-type-occurred_at-str": (replace(GOOD[0], occurred_at="2024-06-01"), "wrong_type"),
    "wrong-type-occurred_at-float": (replace(GOOD[0], occurred_at=1.5), "wrong_type"),
    "wrong-type-limit-bool": (_payload(GOOD[0], device_limit=True), "wrong_type"),
    "wrong-type-license_id-int": (_payload(GOOD[1], license_id=7), "wrong_type"),
    "wrong-type-quality-int": (_payload(GOOD[1], download_quality=1), "wrong_type"),
    "wrong-type-payload": (replace(GOOD[0], payload="PlanChanged"), "wrong_type"),
    "wrong-type-not-an-event": ({"event_id": "e1"}, "wrong_type"),
    "producer-257-bytes": (replace(GOOD[0], producer="p" * 257), "field_too_long"),
    "producer-129-two-byte-chars": (replace(GOOD[0], producer="é" * 129), "field_too_long"),  # 258 bytes
    "producer-999900-bytes": (replace(GOOD[0], producer="p" * 999_900), "field_too_long"),
    "plan_id-65-chars": (_payload(GOOD[0], plan_id="p" * 65), "field_too_long"),
    "download_quality-33-chars": (_payload(GOOD[1], download_quality="q" * 33), "field_too_long"),
}


@pytest.mark.parametrize(("ev", "code"), BAD.values(), ids=BAD.keys())
def test_malformed(ev, code: str) -> None:
    with pytest.raises(MalformedEvent) as raised:
        validate(ev)
    assert raised.value.code == code
    assert raised.value.detail


def test_validation_table_covers_every_payload_field() -> None:
    assert set(PAYLOAD_FIELDS) == set(PAYLOAD_TYPES)
    for cls, kinds in PAYLOAD_FIELDS.items():
        assert list(kinds) == [f.name for f in fields(cls)], cls.__name__


# --- future clock skew: occurred_at against the Kafka message timestamp ---------------------------

HOUR_MS = 3_600_000
TS = 1_717_200_000_000  # the message timestamp, 2024-06-01T00:00:00Z

SKEW_OK = {
    "at-the-limit": (TS + HOUR_MS, TS, HOUR_MS),
    "before-the-message": (TS - 30 * 86_400_000, TS, HOUR_MS),  # late events are fine
    "same-instant": (TS, TS, HOUR_MS),
    "disabled-with-0": (TS + 10 * 365 * 86_400_000, TS, 0),
    "no-message-timestamp": (TS + 10 * 365 * 86_400_000, None, HOUR_MS),
    "custom-limit": (TS + 5_000, TS, 5_000),
}


@pytest.mark.parametrize(("occurred_at", "timestamp", "limit"), SKEW_OK.values(), ids=SKEW_OK.keys())
def test_skew_within_the_limit_passes(occurred_at, timestamp, limit) -> None:
    check_skew(replace(GOOD[0], occurred_at=occurred_at), timestamp, limit)


SKEW_BAD = {
    "1-ms-over": (TS + HOUR_MS + 1, TS, HOUR_MS),
    "days-ahead": (TS + 5 * 86_400_000 + 4 * HOUR_MS, TS, HOUR_MS),
    "microseconds-by-mistake": (TS * 1000, TS, HOUR_MS),  # beyond datetime's years: raw ms in the detail
    "custom-limit-1-ms-over": (TS + 5_001, TS, 5_000),
}


@pytest.mark.parametrize(("occurred_at", "timestamp", "limit"), SKEW_BAD.values(), ids=SKEW_BAD.keys())
def test_an_event_too_far_after_its_message_timestamp_is_clock_skew(occurred_at, timestamp, limit) -> None:
    with pytest.raises(MalformedEvent) as raised:
        check_skew(replace(GOOD[0], occurred_at=occurred_at), timestamp, limit)
    assert raised.value.code == "clock_skew"
    assert "after the message timestamp" in raised.value.detail


def test_clock_skew_detail_is_readable() -> None:
    with pytest.raises(MalformedEvent) as raised:
        check_skew(replace(GOOD[0], occurred_at=TS + 5 * 86_400_000 + 4 * HOUR_MS + 48 * 60_000), TS, HOUR_MS)
    assert raised.value.detail == ("occurred_at 2024-06-06T04:48:00.000Z is 5.2 days after the message timestamp "
                                   "2024-06-01T00:00:00.000Z; limit 1 h")


def test_clock_skew_detail_shows_milliseconds_when_rounding_would_hide_the_excess() -> None:
    with pytest.raises(MalformedEvent) as raised:
        check_skew(replace(GOOD[0], occurred_at=TS + HOUR_MS + 1), TS, HOUR_MS)
    assert raised.value.detail.endswith("is 3600001 ms after the message timestamp 2024-06-01T00:00:00.000Z; "
                                        "limit 3600000 ms")
