"""The schemas of `avro_schemas/`, by record name and version and by CRC-64-AVRO fingerprint.

Files are named `<Record>.v<N>.avsc`; a record's versions must be 1..N without gaps, and the
highest version is the record's reader schema.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

NAMESPACE = "downloads"
SCHEMA_DIR_ENV = "LEDGER_AVRO_SCHEMAS_DIR"
DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[3] / "avro_schemas"
_FILE_NAME = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc")


class SchemaRegistryError(Exception):
    """The schema files are inconsistent (bad name, gap in versions, duplicate fingerprint...)."""


def crc64_avro(data: bytes) -> int:
    """The CRC-64-AVRO (Rabin) fingerprint of the Avro specification, as an unsigned 64-bit int."""
    fp = _CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ byte) & 0xFF]
    return fp


def _crc64_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_CRC64_EMPTY = 0xC15D213AA4D7A795
_CRC64_TABLE = _crc64_table()


def schema_fingerprint(schema: Any) -> int:
    return crc64_avro(to_parsing_canonical_form(schema).encode())


@dataclass(frozen=True, eq=False)
class SchemaVersion:
    name: str
    version: int
    fingerprint: int
    declared: dict[str, Any]  # as written in the file
    parsed: dict[str, Any]  # fastavro-parsed wire schema: logical types stripped, so times stay int ms
    path: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


class SchemaRegistry:
    def __init__(self, versions: Iterable[SchemaVersion]) -> None:
        self._by_fingerprint: dict[int, SchemaVersion] = {}
        self._by_name: dict[str, list[SchemaVersion]] = {}
        for sv in sorted(versions, key=lambda v: (v.name, v.version)):
            clash = self._by_fingerprint.get(sv.fingerprint)
            if clash is not None:
                raise SchemaRegistryError(f"{sv.label} has the same fingerprint as {clash.label}")
            self._by_fingerprint[sv.fingerprint] = sv
            self._by_name.setdefault(sv.name, []).append(sv)
        for name, svs in self._by_name.items():
            found = [sv.version for sv in svs]
            if found != list(range(1, len(svs) + 1)):
                raise SchemaRegistryError(f"{name}: versions {found} are not 1..N without gaps")

    @classmethod
    def load(cls, directory: str | Path | None = None) -> SchemaRegistry:
        directory = Path(directory or os.environ.get(SCHEMA_DIR_ENV) or DEFAULT_SCHEMA_DIR)
        paths = sorted(directory.glob("*.avsc"))
        if not paths:
            raise SchemaRegistryError(f"no .avsc files in {directory}")
        return cls(_load_file(path) for path in paths)

    def get(self, name: str, version: int | None = None) -> SchemaVersion:
        svs = self._by_name.get(name)
        if svs is None:
            raise KeyError(f"unknown record {name!r}; known: {', '.join(sorted(self._by_name))}")
        if version is None:
            return svs[-1]
        if not 1 <= version <= len(svs):
            raise KeyError(f"{name} has no version {version}; versions 1..{len(svs)}")
        return svs[version - 1]

    def latest(self, name: str) -> SchemaVersion:
        return self.get(name)

    def versions(self, name: str) -> list[SchemaVersion]:
        return list(self._by_name.get(name, ()))

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __iter__(self):
        return iter(self._by_fingerprint.values())


@lru_cache(maxsize=1)
def default_registry() -> SchemaRegistry:
    return SchemaRegistry.load()


def _load_file(path: Path) -> SchemaVersion:
    match = _FILE_NAME.fullmatch(path.name)
    if match is None:
        raise SchemaRegistryError(f"{path.name}: expected <Record>.v<N>.avsc")
    name, version = match["name"], int(match["version"])
    declared = json.loads(path.read_text())
    full_name = f"{declared.get('namespace', '')}.{declared.get('name')}"
    if declared.get("type") != "record" or full_name != f"{NAMESPACE}.{name}":
        raise SchemaRegistryError(f"{path.name}: must define record {NAMESPACE}.{name}, found {full_name}")
    try:
        parsed = parse_schema(_without_logical_types(declared))
        fingerprint = schema_fingerprint(declared)
    except Exception as exc:
        raise SchemaRegistryError(f"{path.name}: {exc}") from exc
    return SchemaVersion(name, version, fingerprint, declared, parsed, path)


def _without_logical_types(schema: Any) -> Any:
    # The parsing canonical form ignores logicalType, so the fingerprint is unchanged; the codec then
    # reads and writes timestamp-millis as the plain int milliseconds the domain uses.
    schema = copy.deepcopy(schema)

    def strip(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("logicalType", None)
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for item in node:
                strip(item)

    strip(schema)
    return schema
