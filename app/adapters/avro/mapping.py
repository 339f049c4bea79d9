"""Domain objects <-> Avro datums, and the byte-level helpers the pipeline calls.

Every `decode_*` goes through `decode_stored`, so data written by older schemas is resolved or
upcast to the current shape. Domain rules are not checked here: decoded events still need
`app.domain.validation.validate`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from app.adapters.avro.codec import Codec, default_codec
from app.adapters.avro.registry import NAMESPACE
from app.adapters.avro.upcasters import decode_stored
from app.domain.events import PAYLOAD_TYPES, DownloadEvent, Payload, Recorded
from app.domain.history import LedgerEntry, RejectionEntry, Source
from app.domain.state import MemberState
from app.domain.state_json import state_from_dict, state_to_dict

_AVRO_NAME = {cls: f"{NAMESPACE}.{cls.__name__}" for cls in PAYLOAD_TYPES}
_PAYLOAD_CLASS = {name: cls for cls, name in _AVRO_NAME.items()}
_FIELD_NAMES = {cls: tuple(f.name for f in fields(cls)) for cls in PAYLOAD_TYPES}


# --- datums -------------------------------------------------------------------------------


def event_to_avro(event: DownloadEvent) -> dict[str, Any]:
    payload = event.payload
    cls = type(payload)
    return {
        "event_id": event.event_id,
        "member_id": event.member_id,
        "occurred_at": event.occurred_at,
        "producer": event.producer,
        "event": (_AVRO_NAME[cls], {name: getattr(payload, name) for name in _FIELD_NAMES[cls]}),
    }


def event_from_avro(datum: dict[str, Any]) -> DownloadEvent:
    avro_name, payload = datum["event"]
    return DownloadEvent(
        event_id=datum["event_id"],
        member_id=datum["member_id"],
        occurred_at=datum["occurred_at"],
        producer=datum["producer"],
        payload=_payload_from_avro(avro_name, payload),
    )


def _payload_from_avro(avro_name: str, payload: dict[str, Any]) -> Payload:
    cls = _PAYLOAD_CLASS[avro_name]
    return cls(**{name: payload[name] for name in _FIELD_NAMES[cls] if name in payload})


def ledger_entry_to_avro(recorded: Recorded, source: Source) -> dict[str, Any]:
    return {
        "member_id": recorded.event.member_id,
        "seq": recorded.seq,
        "clock": recorded.clock,
        "event": event_to_avro(recorded.event),
        **_source_to_avro(source),
    }


def ledger_entry_from_avro(datum: dict[str, Any]) -> LedgerEntry:
    recorded = Recorded(seq=datum["seq"], clock=datum["clock"], event=event_from_avro(datum["event"]))
    return LedgerEntry(recorded, _source_from_avro(datum))


def rejection_to_avro(event: DownloadEvent, reason: str, detail: str, clock: int, source: Source) -> dict[str, Any]:
    return {
        "event": event_to_avro(event),
        "reason": str(reason),
        "detail": detail,
        "clock": clock,
        **_source_to_avro(source),
    }


def rejection_from_avro(datum: dict[str, Any]) -> RejectionEntry:
    return RejectionEntry(
        event=event_from_avro(datum["event"]),
        reason=datum["reason"],
        detail=datum["detail"],
        clock=datum["clock"],
        source=_source_from_avro(datum),
    )


def snapshot_to_avro(state: MemberState) -> dict[str, Any]:
    return state_to_dict(state, include_processed=True)


def snapshot_from_avro(datum: dict[str, Any]) -> MemberState:
    return state_from_dict(datum)


def _source_to_avro(source: Source) -> dict[str, Any]:
    return {"source_topic": source.topic, "source_partition": source.partition, "source_offset": source.offset}


def _source_from_avro(datum: dict[str, Any]) -> Source:
    return Source(datum["source_topic"], datum["source_partition"], datum["source_offset"])


# --- bytes --------------------------------------------------------------------------------


def encode_event(event: DownloadEvent, version: int | None = None, codec: Codec | None = None) -> bytes:
    return (codec or default_codec()).encode("DownloadEvent", event_to_avro(event), version)


def decode_event(data: bytes, codec: Codec | None = None) -> DownloadEvent:
    return event_from_avro(decode_stored(data, "DownloadEvent", codec)[2])


def encode_ledger_entry(recorded: Recorded, source: Source, codec: Codec | None = None) -> bytes:
    return (codec or default_codec()).encode("LedgerEntry", ledger_entry_to_avro(recorded, source))


def decode_ledger_entry(data: bytes, codec: Codec | None = None) -> LedgerEntry:
    return ledger_entry_from_avro(decode_stored(data, "LedgerEntry", codec)[2])


def encode_rejection(
    event: DownloadEvent, reason: str, detail: str, clock: int, source: Source, codec: Codec | None = None
) -> bytes:
    return (codec or default_codec()).encode("Rejection", rejection_to_avro(event, reason, detail, clock, source))


def decode_rejection(data: bytes, codec: Codec | None = None) -> RejectionEntry:
    return rejection_from_avro(decode_stored(data, "Rejection", codec)[2])


def encode_snapshot(state: MemberState, codec: Codec | None = None) -> bytes:
    return (codec or default_codec()).encode("MemberSnapshot", snapshot_to_avro(state))


def decode_snapshot(data: bytes, codec: Codec | None = None) -> MemberState:
    return snapshot_from_avro(decode_stored(data, "MemberSnapshot", codec)[2])


class AvroMessageCodec:
    """The services' MessageCodec port: Avro single-object encoding, older versions upcast."""

    def __init__(self, codec: Codec | None = None):
        self.codec = codec

    def decode_event(self, data: bytes) -> DownloadEvent:
        return decode_event(data, self.codec)

    def decode_ledger_entry(self, data: bytes) -> LedgerEntry:
        return decode_ledger_entry(data, self.codec)

    def decode_rejection(self, data: bytes) -> RejectionEntry:
        return decode_rejection(data, self.codec)
