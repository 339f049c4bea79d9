"""Avro single-object encoding: C3 01, the writer schema's 8-byte little-endian CRC-64-AVRO
fingerprint, then the binary body. Decoding resolves the writer schema against the reader schema
(by default the record's latest version), so old and new producers and consumers interoperate.

Values of record unions (the `event` of DownloadEvent) are `(full_name, dict)` tuples both ways,
e.g. ("downloads.LicenseRenewed", {...}): a union branch is never guessed from the dict's keys.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.validation import ValidationError, validate

from app.adapters.avro.errors import DecodeError, EncodeError
from app.adapters.avro.registry import SchemaRegistry, SchemaVersion, default_registry

MARKER = b"\xc3\x01"
HEADER_SIZE = len(MARKER) + 8


def single_object_header(fingerprint: int) -> bytes:
    return MARKER + fingerprint.to_bytes(8, "little")


class Codec:
    """Reads any writer schema of the registry; reads into each record's reader version.

    The reader version is the latest one unless pinned by `reader_versions` (code built against an
    older contract that still knows the newer writer schemas).
    """

    def __init__(self, registry: SchemaRegistry, reader_versions: Mapping[str, int] | None = None) -> None:
        self.registry = registry
        pinned = reader_versions or {}
        self._readers = {name: registry.get(name, pinned.get(name)) for name in registry.names()}
        self._headers = {sv: single_object_header(sv.fingerprint) for sv in registry}
        self._by_header_fp = {sv.fingerprint.to_bytes(8, "little"): sv for sv in registry}

    def reader(self, record_name: str) -> SchemaVersion:
        return self._readers[record_name]

    def encode(self, record_name: str, datum: Any, version: int | None = None) -> bytes:
        """Encode with the given version of the record (default: its reader version). Raises EncodeError."""
        try:
            sv = self._readers[record_name] if version is None else self.registry.get(record_name, version)
        except KeyError as exc:
            raise EncodeError("unknown_schema", str(exc.args[0])) from None
        # Collecting errors costs fastavro a json.dumps per union branch that does not match, so
        # the common, valid datum is checked without them and only a failure is checked again.
        if not validate(datum, sv.parsed, raise_errors=False):
            try:
                validate(datum, sv.parsed, raise_errors=True)
            except ValidationError as exc:
                problems = "; ".join(map(str, exc.errors))
                raise EncodeError("out_of_schema", f"{sv.label}: {_shorten(problems)}") from None
        buffer = io.BytesIO()
        buffer.write(self._headers[sv])
        try:
            schemaless_writer(buffer, sv.parsed, datum)
        except (TypeError, ValueError, OverflowError, KeyError, AttributeError) as exc:
            raise EncodeError("out_of_schema", f"{sv.label}: {exc}") from None
        return buffer.getvalue()

    def writer_of(self, data: bytes) -> SchemaVersion:
        """The writer schema named by the header. Raises DecodeError."""
        if len(data) < HEADER_SIZE:
            if MARKER.startswith(bytes(data[:2])):
                raise DecodeError("truncated", f"{len(data)} bytes, a single-object header needs {HEADER_SIZE}")
            raise DecodeError("bad_marker", f"starts with {bytes(data[:2]).hex()}, expected c301")
        if data[:2] != MARKER:
            raise DecodeError("bad_marker", f"starts with {bytes(data[:2]).hex()}, expected c301")
        sv = self._by_header_fp.get(bytes(data[2:HEADER_SIZE]))
        if sv is None:
            fingerprint = int.from_bytes(data[2:HEADER_SIZE], "little")
            raise DecodeError("unknown_fingerprint", f"no known schema has fingerprint {fingerprint:#018x}")
        return sv

    def decode(self, data: bytes, record_name: str | None = None) -> tuple[str, int, Any]:
        """-> (record name, writer version, datum in the shape of the record's reader version)."""
        writer = self.writer_of(data)
        if record_name is not None and writer.name != record_name:
            raise DecodeError("schema_mismatch", f"expected a {record_name}, got {writer.label}")
        return writer.name, writer.version, self.read_body(data, writer, self._readers[writer.name])

    def read_body(self, data: bytes, writer: SchemaVersion, reader: SchemaVersion) -> Any:
        """The body of `data` written with `writer`, resolved to `reader`. Raises DecodeError."""
        fo = io.BytesIO(data)
        fo.seek(HEADER_SIZE)
        try:
            datum = schemaless_reader(
                fo, writer.parsed, None if reader is writer else reader.parsed, return_record_name=True
            )
        except EOFError as exc:
            if str(exc).startswith("Expected -"):  # fastavro read a negative length: corrupt, not short
                raise DecodeError("out_of_schema", f"{writer.label} body has a negative length: {exc}") from None
            raise DecodeError("truncated", f"{writer.label} body ends early: {exc}") from None
        except SchemaResolutionError as exc:
            raise DecodeError("schema_mismatch", f"{writer.label} cannot be read as {reader.label}: {exc}") from None
        except Exception as exc:  # a body fastavro cannot read is, whatever the exception, not of the schema
            if _reads_past_the_end(data, writer, reader):  # ... unless it was cut short
                raise DecodeError(
                    "truncated", f"{writer.label} body ends early: {type(exc).__name__}: {exc}"
                ) from None
            raise DecodeError(
                "out_of_schema", f"{writer.label} body does not match the schema: {type(exc).__name__}: {exc}"
            ) from None
        left = len(data) - fo.tell()
        if left:
            raise DecodeError("out_of_schema", f"{writer.label} body has {left} trailing bytes")
        return datum


_PADDING = bytes(10)  # as long as the longest varint; a zero byte ends a varint, a length, a union index


def _reads_past_the_end(data: bytes, writer: SchemaVersion, reader: SchemaVersion) -> bool:
    """Whether the reader wants bytes past the end of ``data``: reading it followed by zeros goes
    into the zeros. fastavro raises EOFError for a string or bytes cut short, but IndexError for a
    varint (a long, an int, a length, a union index) cut in its middle or missing; a body that is
    corrupt within its bytes fails at the same place with or without the zeros."""
    fo = io.BytesIO(bytes(data) + _PADDING)
    fo.seek(HEADER_SIZE)
    try:
        schemaless_reader(fo, writer.parsed, None if reader is writer else reader.parsed, return_record_name=True)
    except Exception:  # noqa: BLE001 - only how far it read matters
        pass
    return fo.tell() > len(data)


def _shorten(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=1)
def default_codec() -> Codec:
    return Codec(default_registry())


def encode(record_name: str, datum: Any, version: int | None = None) -> bytes:
    return default_codec().encode(record_name, datum, version)


def decode(data: bytes, record_name: str | None = None) -> tuple[str, int, Any]:
    return default_codec().decode(data, record_name)
