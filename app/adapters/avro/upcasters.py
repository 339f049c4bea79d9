"""Explicit vN -> vN+1 steps for stored data whose schema change Avro resolution cannot express.

`decode_stored` reads stored events and snapshots. When no step between the writer version and the
reader version (normally the latest) has an upcaster, it is plain schema resolution. Otherwise the
body is read with the writer's own schema and walked up one version at a time: the registered
upcaster, or schema resolution for a step without one. Data that cannot be brought to the reader
version raises DecodeError and the caller falls back (a snapshot is skipped, the state rebuilt
from events).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastavro.validation import ValidationError, validate

from app.adapters.avro.codec import Codec, default_codec
from app.adapters.avro.errors import DecodeError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def member_snapshot_v1_to_v2(snapshot: dict[str, Any]) -> dict[str, Any]:
    """month_downloads: map "YYYY-MM" -> count  becomes  [{year, month, count}] sorted by month."""
    months = []
    for key, count in snapshot["month_downloads"].items():
        year, month = _parse_year_month(key)
        months.append({"year": year, "month": month, "count": count})
    months.sort(key=lambda m: (m["year"], m["month"]))
    return {**snapshot, "month_downloads": months}


def _parse_year_month(key: str) -> tuple[int, int]:
    year, sep, month = key.rpartition("-")
    if not sep or not 1 <= int(month) <= 12:
        raise ValueError(f"month key {key!r} is not YYYY-MM")
    return int(year), int(month)


# (record name, from version) -> step to from version + 1
UPCASTERS: Mapping[tuple[str, int], Upcaster] = {
    ("MemberSnapshot", 1): member_snapshot_v1_to_v2,
}


def decode_stored(
    data: bytes,
    record_name: str | None = None,
    codec: Codec | None = None,
    upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
) -> tuple[str, int, Any]:
    """-> (record name, writer version, datum in the shape of the record's reader version).

    A writer newer than the reader is read by plain resolution (forward compatibility).
    """
    codec = codec or default_codec()
    registry = codec.registry
    writer = codec.writer_of(data)
    if record_name is not None and writer.name != record_name:
        raise DecodeError("schema_mismatch", f"expected a {record_name}, got {writer.label}")
    target = codec.reader(writer.name)
    steps = range(writer.version, target.version)
    if not any((writer.name, version) in upcasters for version in steps):
        return writer.name, writer.version, codec.read_body(data, writer, target)

    datum = codec.read_body(data, writer, writer)
    for version in steps:
        current, following = registry.get(writer.name, version), registry.get(writer.name, version + 1)
        upcaster = upcasters.get((writer.name, version))
        try:
            if upcaster is not None:
                datum = upcaster(datum)
            else:
                datum = codec.read_body(codec.encode(writer.name, datum, version), current, following)
            validate(datum, following.parsed, raise_errors=True)
        except DecodeError:
            raise
        except (ValidationError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DecodeError(
                "schema_mismatch", f"{writer.label} cannot be upcast to v{version + 1}: {type(exc).__name__}: {exc}"
            ) from None
    return writer.name, writer.version, datum
