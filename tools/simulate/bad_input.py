"""Bad input for the simulator: malformed events (decodable, but `validate` refuses them) and
undecodable bytes (`decode_event` raises DecodeError). Both are what the decider must dead-letter.

Every function draws only from the `rng` it is given, so the output is a function of the seed.
"""
from __future__ import annotations

import dataclasses
import json
import random
from functools import lru_cache

from app.adapters.avro.codec import HEADER_SIZE, MARKER, default_codec
from app.adapters.avro.mapping import encode_event
from app.adapters.json_events import event_to_json
from app.domain.events import DownloadEvent, LicenseAcquired, LicenseReleased, LicenseRenewed, PlanChanged

# Identifiers that break DOMAIN.md's pattern (1-64 characters from [A-Za-z0-9._:-]).
BAD_IDENTIFIERS = ("", "has space", "slash/inside", "ünïcode-id", "semi;colon", "x" * 65, "tab\tid", "quote'd")
BAD_REASONS = ("LOST", "deleted", "", "EXPIRED ")

MALFORMED_VARIANTS = ("bad_identifier", "limit_below_1", "unknown_reason")
UNDECODABLE_VARIANTS = (
    "garbage", "json_text", "wrong_marker", "unknown_fingerprint", "truncated", "wrong_record", "empty",
)
_UNDECODABLE_WEIGHTS = (25, 15, 15, 15, 20, 5, 5)
_UNDECODABLE_CUM = [sum(_UNDECODABLE_WEIGHTS[: i + 1]) for i in range(len(_UNDECODABLE_WEIGHTS))]


def malformed_event(rng: random.Random, template: DownloadEvent) -> tuple[str, DownloadEvent]:
    """A variant name and an event that still encodes as Avro but fails `validate`.

    `template` is a well-formed LicenseAcquired of the member; its envelope is kept.
    """
    acq = template.payload
    assert isinstance(acq, LicenseAcquired)
    variant = MALFORMED_VARIANTS[min(int(rng.random() * 3), 2)]
    bad_id = BAD_IDENTIFIERS[int(rng.random() * len(BAD_IDENTIFIERS))]
    if variant == "bad_identifier":
        where = int(rng.random() * 6)
        if where == 0:
            return f"{variant}:event_id", _envelope(template, acq, event_id=bad_id)
        if where == 1:
            return f"{variant}:license_id", _envelope(template, LicenseRenewed(bad_id, acq.expires_at))
        if where == 2:
            return f"{variant}:license_id", _envelope(template, LicenseReleased(bad_id, "DELETED"))
        field = ("device_id", "title_id", "studio_id")[where - 3]
        return f"{variant}:{field}", _envelope(template, _replace(acq, **{field: bad_id}))
    if variant == "limit_below_1":
        value = -int(rng.random() * 3)  # 0, -1 or -2
        where = int(rng.random() * 6)
        if where < 3:
            limits = {"device_limit": 2, "downloads_per_device": 10, "monthly_limit": None}
            field = ("device_limit", "downloads_per_device", "monthly_limit")[where]
            limits[field] = value
            return f"{variant}:{field}", _envelope(template, PlanChanged("standard", **limits))
        field = ("title_yearly_limit", "studio_concurrent_limit", "max_renewals")[where - 3]
        if field == "max_renewals":
            value = -1 - int(rng.random() * 3)  # max_renewals may be 0, so below 0
        return f"{variant}:{field}", _envelope(template, _replace(acq, **{field: value}))
    reason = BAD_REASONS[int(rng.random() * len(BAD_REASONS))]
    return variant, _envelope(template, LicenseReleased(acq.license_id, reason))


def undecodable_bytes(rng: random.Random, template: DownloadEvent) -> tuple[str, bytes]:
    """A variant name and bytes that `decode_event` refuses, most derived from `template`'s encoding."""
    draw = rng.random() * _UNDECODABLE_CUM[-1]
    variant = next(v for v, c in zip(UNDECODABLE_VARIANTS, _UNDECODABLE_CUM) if draw < c)
    if variant == "garbage":
        n = 1 + int(rng.random() * 64)
        data = bytearray(rng.getrandbits(8 * n).to_bytes(n, "little"))
        if data[0] == MARKER[0]:
            data[0] ^= 0xFF
        return variant, bytes(data)
    if variant == "json_text":  # a producer configured with the wrong serializer
        return variant, json.dumps(event_to_json(template), separators=(",", ":")).encode()
    if variant == "empty":
        return variant, b""
    if variant == "wrong_record":  # a single-object message of another record on the events topic
        plan = {"plan_id": "standard", "device_limit": 2, "downloads_per_device": 10, "monthly_limit": None}
        return variant, default_codec().encode("PlanChanged", plan)
    data = encode_event(template)
    if variant == "wrong_marker":
        marker = (b"\xc3\x02", b"\x00\x01", b"Ob", b"\x01\xc3")[int(rng.random() * 4)]
        return variant, marker + data[2:]
    if variant == "unknown_fingerprint":
        while True:
            fingerprint = rng.getrandbits(64).to_bytes(8, "little")
            if fingerprint not in _known_fingerprints():
                return variant, MARKER + fingerprint + data[HEADER_SIZE:]
    # truncated: a valid message cut anywhere (in the header or in the body)
    return variant, data[: 1 + int(rng.random() * (len(data) - 1))]


@lru_cache(maxsize=1)
def _known_fingerprints() -> frozenset[bytes]:
    return frozenset(sv.fingerprint.to_bytes(8, "little") for sv in default_codec().registry)


def _envelope(template: DownloadEvent, payload, event_id: str | None = None) -> DownloadEvent:
    return DownloadEvent(event_id if event_id is not None else template.event_id, template.member_id,
                         template.occurred_at, template.producer, payload)


def _replace(acq: LicenseAcquired, **changes) -> LicenseAcquired:
    return dataclasses.replace(acq, **changes)
