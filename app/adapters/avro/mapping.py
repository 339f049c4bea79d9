"""Domain objects <-> Avro datums, and the byte-level helpers the pipeline calls.

Every `decode_*` goes through `decode_stored`, so data written by older schemas is resolved or
upcast to the current shape. Domain rules are not checked here: decoded events still need
`app.domain.validation.validate`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import fields
from functools import cache, lru_cache
from typing import Any

from app.adapters.avro.codec import HEADER_SIZE, Codec, default_codec, single_object_header
from app.adapters.avro.errors import EncodeError
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
#
# Each event is encoded once on its way through the decider: its event-store row (the payload)
# and its ledger entry or rejection, which embed the same DownloadEvent body. `encode_event`
# remembers the bytes of the last RECENT_EVENTS events it encoded with the default codec (by
# identity: an event is immutable, and the entry holds it, so its id is not reused meanwhile), and
# `encode_ledger_entry` / `encode_rejection` write their own fields around that body instead of
# encoding (and validating) the event again. The splice is used only when it gives the codec's
# own bytes for a probe record (`_splice_ok`; tests/unit/test_avro_codec.py checks it on random
# records), so a schema change that breaks it falls back to encoding the whole record.

RECENT_EVENTS = 8192

_recent_events: OrderedDict[int, tuple[DownloadEvent, bytes]] = OrderedDict()


def encode_event(event: DownloadEvent, version: int | None = None, codec: Codec | None = None) -> bytes:
    if version is not None or codec is not None:
        return (codec or default_codec()).encode("DownloadEvent", event_to_avro(event), version)
    hit = _recent_events.get(id(event))
    if hit is not None and hit[0] is event:
        return hit[1]
    data = default_codec().encode("DownloadEvent", event_to_avro(event))
    _recent_events[id(event)] = (event, data)
    if len(_recent_events) > RECENT_EVENTS:
        _recent_events.popitem(last=False)
    return data


def _long(n: int) -> bytes:
    """An Avro int or long: zigzag, then a little-endian base-128 varint."""
    if not -(1 << 63) <= n < (1 << 63):
        raise EncodeError("out_of_schema", f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _int(n: int) -> bytes:
    if not -(1 << 31) <= n < (1 << 31):
        raise EncodeError("out_of_schema", f"{n} does not fit an Avro int")
    return _long(n)


def _string(text: str) -> bytes:
    data = text.encode()
    return _long(len(data)) + data


def _source_bytes(source: Source) -> bytes:
    return _string(source.topic) + _int(source.partition) + _long(source.offset)


def _event_body(event: DownloadEvent) -> bytes:
    return encode_event(event)[HEADER_SIZE:]


def _spliced_ledger_entry(recorded: Recorded, source: Source) -> bytes:
    return (_header("LedgerEntry") + _string(recorded.event.member_id) + _long(recorded.seq) + _long(recorded.clock)
            + _event_body(recorded.event) + _source_bytes(source))


def _spliced_rejection(event: DownloadEvent, reason: str, detail: str, clock: int, source: Source) -> bytes:
    return (_header("Rejection") + _event_body(event) + _string(str(reason)) + _string(detail) + _long(clock)
            + _source_bytes(source))


@cache
def _header(record_name: str) -> bytes:
    return single_object_header(default_codec().reader(record_name).fingerprint)


@lru_cache(maxsize=1)
def _splice_ok() -> bool:
    """Whether the spliced ledger entry and rejection are the codec's own bytes: the records embed
    the latest DownloadEvent, and the fields around it are the ones written here."""
    from app.domain.events import LicenseAcquired

    codec = default_codec()
    event = DownloadEvent("e-probe", "m-probe", 1_700_000_000_000, "probe",
                          LicenseAcquired("l-1", "d-1", "t-1", "s-1", 1_700_000_100_000, 3, None, 2, "HD"))
    recorded = Recorded(seq=300, clock=-5, event=event)
    source = Source("downloads.events", 11, 1 << 40)
    try:
        return (_spliced_ledger_entry(recorded, source) == codec.encode("LedgerEntry", ledger_entry_to_avro(recorded, source))
                and _spliced_rejection(event, "over_limit", "détail", 7, source)
                == codec.encode("Rejection", rejection_to_avro(event, "over_limit", "détail", 7, source)))
    except Exception:  # noqa: BLE001 - any mismatch means: encode whole records
        return False


def decode_event(data: bytes, codec: Codec | None = None) -> DownloadEvent:
    return event_from_avro(decode_stored(data, "DownloadEvent", codec)[2])


def encode_ledger_entry(recorded: Recorded, source: Source, codec: Codec | None = None) -> bytes:
    if codec is None and _splice_ok():
        return _spliced_ledger_entry(recorded, source)
    return (codec or default_codec()).encode("LedgerEntry", ledger_entry_to_avro(recorded, source))


def decode_ledger_entry(data: bytes, codec: Codec | None = None) -> LedgerEntry:
    return ledger_entry_from_avro(decode_stored(data, "LedgerEntry", codec)[2])


def encode_rejection(
    event: DownloadEvent, reason: str, detail: str, clock: int, source: Source, codec: Codec | None = None
) -> bytes:
    if codec is None and _splice_ok():
        return _spliced_rejection(event, reason, detail, clock, source)
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
