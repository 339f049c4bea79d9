"""Events written as JSON objects (``ledger publish FILE.jsonl``, the simulator's JSON lines).

One object per event: the envelope fields, ``type`` (the payload's record name) and ``payload``::

    {"event_id": "e-1", "member_id": "m-1", "occurred_at": 1767225600000, "producer": "license-svc",
     "type": "LicenseAcquired", "payload": {"license_id": "l-1", "device_id": "d-1", ...}}

Optional payload fields may be omitted (they are null). Anything else raises MalformedEvent.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, fields
from typing import Any

from app.domain.events import PAYLOAD_TYPES, DownloadEvent
from app.domain.history import ACCEPTED, StoredDecision
from app.domain.validation import MalformedEvent, validate

_BY_NAME = {cls.__name__: cls for cls in PAYLOAD_TYPES}
_ENVELOPE = ("event_id", "member_id", "occurred_at", "producer")


def event_from_json(obj: Any) -> DownloadEvent:
    if not isinstance(obj, dict):
        raise MalformedEvent("wrong_type", f"an event must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in (*_ENVELOPE, "type", "payload") if k not in obj]
    if missing:
        raise MalformedEvent("missing_field", f"missing {', '.join(missing)}")
    cls = _BY_NAME.get(obj["type"])
    if cls is None:
        raise MalformedEvent("wrong_type", f"unknown event type {obj['type']!r}; one of {', '.join(_BY_NAME)}")
    payload = obj["payload"]
    if not isinstance(payload, dict):
        raise MalformedEvent("wrong_type", "payload must be a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise MalformedEvent("wrong_type", f"{cls.__name__} has no field {', '.join(unknown)}")
    values = {}
    for f in fields(cls):
        if f.name in payload:
            values[f.name] = payload[f.name]
        elif f.default is not MISSING:
            values[f.name] = f.default
        elif f.type in ("int | None", "str | None"):
            values[f.name] = None
        else:
            raise MalformedEvent("missing_field", f"{cls.__name__}.{f.name} is missing")
    event = DownloadEvent(**{k: obj[k] for k in _ENVELOPE}, payload=cls(**values))
    validate(event)
    return event


def event_to_json(event: DownloadEvent) -> dict[str, Any]:
    return {
        **{k: getattr(event, k) for k in _ENVELOPE},
        "type": type(event.payload).__name__,
        "payload": asdict(event.payload),
    }


def decision_to_json(d: StoredDecision) -> dict[str, Any]:
    """A decided event as the history shows it (the read API's history, `ledger history --json`)."""
    event = event_to_json(d.event)
    return {
        "seq": d.seq, "sub": d.sub, "outcome": "accepted" if d.kind == ACCEPTED else "rejected",
        "reason": d.reason, "detail": d.detail, "type": event["type"], "event_id": d.event.event_id,
        "occurred_at": d.event.occurred_at, "producer": d.event.producer, "clock": d.clock,
        "payload": event["payload"],
        "source": {"topic": d.source.topic, "partition": d.source.partition, "offset": d.source.offset},
    }
