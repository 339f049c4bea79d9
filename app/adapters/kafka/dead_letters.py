"""The dead letters of the DLQ topic as an operator sees them (`ledger dlq list|show|redrive`).

A dead letter is the input message's key and value bytes with the outbox's headers (see
outbox.py): ``error.kind``, ``error.code``, ``error.detail``, ``source.topic``,
``source.partition``, ``source.offset``, ``source.timestamp`` (written since the redrive exists),
``dlq.*`` when it was cut to fit, and the input's own headers.

Redriving republishes the original key and value to the events topic, in the source partition and
with the source message's timestamp, and marks the copy with headers that the outbox passes on if it
fails again: ``redrive.count`` (how many redrives led to this message), ``redrive.from`` (the dead
letter's ``partition:offset``) and ``redrive.at`` (ms). A dead letter whose input had been redriven
already is not redriven again unless forced, so a message whose cause is not fixed cannot go round
for ever. A truncated dead letter (``dlq.truncated``) holds only a prefix of the original bytes and
can never be redriven.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.adapters.avro.codec import Codec, default_codec
from app.adapters.avro.errors import DecodeError
from app.adapters.kafka.producer import OutRecord
from app.service.ports import InputMessage

REDRIVE_COUNT = "redrive.count"
REDRIVE_FROM = "redrive.from"
REDRIVE_AT = "redrive.at"
OWN_HEADER_PREFIXES = ("error.", "source.", "dlq.", "redrive.")  # not passed on to a redriven copy


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One message of the DLQ topic, with its headers read."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None  # when the dead letter was produced (ms)
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_message(cls, m: InputMessage) -> DeadLetterRecord:
        return cls(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value, tuple(m.headers))

    # --- headers ----------------------------------------------------------------------------

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def text(self, name: str) -> str | None:
        v = self.header(name)
        return None if v is None else v.decode("utf-8", errors="replace")

    def number(self, name: str) -> int | None:
        v = self.text(name)
        try:
            return None if v is None else int(v)
        except ValueError:
            return None

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def kind(self) -> str:
        return self.text("error.kind") or "?"

    @property
    def code(self) -> str:
        return self.text("error.code") or "?"

    @property
    def detail(self) -> str:
        return self.text("error.detail") or ""

    @property
    def source_topic(self) -> str | None:
        return self.text("source.topic")

    @property
    def source_partition(self) -> int | None:
        return self.number("source.partition")

    @property
    def source_offset(self) -> int | None:
        return self.number("source.offset")

    @property
    def source_timestamp(self) -> int | None:
        return self.number("source.timestamp")

    @property
    def truncated(self) -> bool:
        return self.header("dlq.truncated") == b"true" or self.value is None

    @property
    def redrive_count(self) -> int:
        return self.number(REDRIVE_COUNT) or 0

    @property
    def redrive_from(self) -> str | None:
        return self.text(REDRIVE_FROM)

    @property
    def source(self) -> str:
        if self.source_topic is None:
            return "?"
        return f"{self.source_topic}[{self.source_partition}]@{self.source_offset}"

    def passed_on(self) -> tuple[tuple[str, bytes], ...]:
        """The input's own headers, as the outbox copied them."""
        return tuple((k, v) for k, v in self.headers if not k.startswith(OWN_HEADER_PREFIXES))


# --- what a value holds ----------------------------------------------------------------------


def decode_value(value: bytes | None, codec: Codec | None = None) -> tuple[str, dict[str, Any]] | str:
    """(writer schema label, datum) of an Avro single-object value, or why it cannot be decoded."""
    if value is None:
        return "no value"
    codec = codec or default_codec()
    try:
        writer = codec.writer_of(value)
        datum = codec.read_body(value, writer, writer)
    except DecodeError as exc:
        return str(exc)
    return writer.label, datum


def event_id(value: bytes | None, codec: Codec | None = None) -> str | None:
    """The event id of a value that decodes as a DownloadEvent (a malformed event has one too)."""
    decoded = decode_value(value, codec)
    if isinstance(decoded, str) or not decoded[0].startswith("DownloadEvent"):
        return None
    found = decoded[1].get("event_id") if isinstance(decoded[1], dict) else None
    return found if isinstance(found, str) else None


def to_json(datum: Any) -> str:
    """A decoded datum as indented JSON (bytes as hex, union branches as {"type", "value"})."""
    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str):
            return {"type": x[0], "value": plain(x[1])}
        if isinstance(x, list | tuple):
            return [plain(v) for v in x]
        if isinstance(x, bytes):
            return x.hex()
        return x
    return json.dumps(plain(datum), indent=2, ensure_ascii=False, default=str)


def hex_dump(data: bytes, limit: int = 1024) -> list[str]:
    """``xxd``-like lines: offset, 16 bytes in hex, their printable ASCII; at most ``limit`` bytes."""
    lines = []
    for at in range(0, min(len(data), limit), 16):
        chunk = data[at:at + 16]
        hexed = " ".join(chunk[i:i + 2].hex() for i in range(0, len(chunk), 2))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{at:08x}: {hexed:<39}  {text}")
    if len(data) > limit:
        lines.append(f"... {len(data) - limit:,} more byte(s)")
    return lines


def header_text(value: bytes | None) -> str:
    """A header value as text when it is printable UTF-8, else as hex."""
    if value is None:
        return "(null)"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + value.hex()
    return text if text.isprintable() else "0x" + value.hex()


# --- selecting and redriving ---------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command works on: error codes (none: all), and dead-letter time bounds
    in ms (``since`` inclusive, ``until`` exclusive)."""

    codes: frozenset[str] = frozenset()
    since: int | None = None
    until: int | None = None

    def matches(self, dl: DeadLetterRecord) -> bool:
        if self.codes and dl.code not in self.codes:
            return False
        if self.since is not None and (dl.timestamp is None or dl.timestamp < self.since):
            return False
        return self.until is None or (dl.timestamp is not None and dl.timestamp < self.until)


TRUNCATED = "truncated"
ALREADY_REDRIVEN = "already redriven"


def refusal(dl: DeadLetterRecord, *, force: bool = False) -> tuple[str, str] | None:
    """(reason, explanation) when the dead letter must not be redriven, None when it may."""
    if dl.truncated:
        size = dl.text("dlq.original_size")
        return TRUNCATED, ("the dead letter holds only a prefix of the original"
                           + (f" ({size} bytes, sha256 {dl.text('dlq.original_sha256')})" if size else "")
                           + ": republish the original from its producer")
    if dl.redrive_count >= 1 and not force:
        return ALREADY_REDRIVEN, (f"its message was redriven {dl.redrive_count} time(s) already (from "
                                  f"{dl.redrive_from}) and failed again: fix the cause, then use --force")
    return None


def redrive_record(dl: DeadLetterRecord, topic: str, now_ms: int, *, keep_timestamp: bool = True,
                   partitions: int | None = None) -> OutRecord:
    """The original key and value for ``topic``: in the source partition when the dead letter came
    from that topic (so the member's events stay in one partition whatever partitioner the original
    producer used), with the source message's timestamp (else the dead letter's own, which is a
    little later), the input's own headers and the redrive headers."""
    headers = dl.passed_on() + ((REDRIVE_COUNT, str(dl.redrive_count + 1).encode()),
                                (REDRIVE_FROM, dl.position.encode()),
                                (REDRIVE_AT, str(now_ms).encode()))
    timestamp = (dl.source_timestamp or dl.timestamp) if keep_timestamp else None
    partition = dl.source_partition if dl.source_topic == topic else None
    if partition is not None and (partition < 0 or (partitions is not None and partition >= partitions)):
        partition = None
    return OutRecord(topic, dl.key, dl.value, headers, timestamp=timestamp, partition=partition)
