"""Schema files, CRC-64-AVRO fingerprints and the registry's consistency checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from app.adapters.avro.registry import (
    DEFAULT_SCHEMA_DIR,
    SchemaRegistry,
    SchemaRegistryError,
    crc64_avro,
    default_registry,
    schema_fingerprint,
)

# Published versions and their fingerprints. A published version is never edited: a change to one of
# these files fails here. Add a new version (a new file) and a new line instead.
PUBLISHED = {
    "DeviceDeactivated.v1": 0xC3AB385837A42E2C,
    "DownloadEvent.v1": 0xF93AB7F988B1AC16,
    "DownloadEvent.v2": 0xF86FDA803F363FFC,
    "LedgerEntry.v1": 0xDC6F303EAC680B2B,
    "LicenseAcquired.v1": 0x358B697241266890,
    "LicenseAcquired.v2": 0x31C564AC191113F5,
    "LicenseReleased.v1": 0xA521827EBBD86ABE,
    "LicenseRenewed.v1": 0x110265E2180C7803,
    "MemberSnapshot.v1": 0x7885D3D00A8E4D3F,
    "MemberSnapshot.v2": 0x6B9171E63E5F9F22,
    "PlanChanged.v1": 0x8698462381FD0562,
    "Rejection.v1": 0x9CBAE1F35872DE9E,
}

# Test vectors of the Avro project (share/test/data/schema-tests.txt), as signed 64-bit Java longs.
AVRO_SPEC_VECTORS = [
    ('"null"', 7195948357588979594),
    ('"boolean"', -6970731678124411036),
    ('"int"', 8247732601305521295),
    ('"long"', -3434872931120570953),
    ('"string"', -8142146995180207161),
    ('[ "int" , {"type":"boolean"} ]', 5392556393470105090),
    ('{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}', 5916914534497305771),
    (
        '{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":true},'
        ' {"order":"descending","name":"f2","doc":"Hello","type":"int"}], "type":"record", "name":"foo"}',
        -4860222112080293046,
    ),
    ('{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}',
     -4448647247586288245),
    ('{ "items":{"type":"null"}, "type":"array"}', -589620603366471059),
    ('{ "values":"string", "type":"map"}', -8732877298790414990),
]


def test_fingerprint_of_int_is_the_spec_value() -> None:
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F


@pytest.mark.parametrize(("schema", "signed"), AVRO_SPEC_VECTORS, ids=[s for s, _ in AVRO_SPEC_VECTORS])
def test_fingerprint_matches_the_avro_test_vectors(schema: str, signed: int) -> None:
    parsed = json.loads(schema)
    assert schema_fingerprint(parsed) == signed & 0xFFFF_FFFF_FFFF_FFFF
    # fastavro renders the same fingerprint as little-endian hex (the wire byte order)
    ours = schema_fingerprint(parsed).to_bytes(8, "little").hex()
    assert ours == fastavro_fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")


def test_published_schemas_are_never_edited() -> None:
    found = {f"{sv.name}.v{sv.version}": sv.fingerprint for sv in default_registry()}
    assert found == PUBLISHED


def test_every_file_declares_its_record_in_the_downloads_namespace() -> None:
    for path in DEFAULT_SCHEMA_DIR.glob("*.avsc"):
        declared = json.loads(path.read_text())
        assert declared["namespace"] == "downloads"
        assert path.name.startswith(declared["name"] + ".v")


def test_reader_schema_is_the_highest_version() -> None:
    registry = default_registry()
    assert registry.latest("LicenseAcquired").version == 2
    assert registry.latest("DownloadEvent").version == 2
    assert registry.latest("MemberSnapshot").version == 2
    assert registry.get("DownloadEvent", 1).version == 1
    assert registry.names() == sorted({label.split(".v")[0] for label in PUBLISHED})


def test_unknown_record_or_version_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="unknown record"):
        default_registry().get("Nope")
    with pytest.raises(KeyError, match="no version 3"):
        default_registry().get("DownloadEvent", 3)


def _copy(tmp_path: Path, *names: str) -> Path:
    for name in names:
        shutil.copy(DEFAULT_SCHEMA_DIR / f"{name}.avsc", tmp_path / f"{name}.avsc")
    return tmp_path


def test_registry_loads_a_given_directory(tmp_path: Path) -> None:
    registry = SchemaRegistry.load(_copy(tmp_path, "LicenseRenewed.v1"))
    assert registry.names() == ["LicenseRenewed"]


def test_registry_loads_the_directory_named_by_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LEDGER_AVRO_SCHEMAS_DIR", str(_copy(tmp_path, "PlanChanged.v1")))
    assert SchemaRegistry.load().names() == ["PlanChanged"]


def test_registry_refuses_a_gap_in_versions(tmp_path: Path) -> None:
    _copy(tmp_path, "LicenseAcquired.v2")
    with pytest.raises(SchemaRegistryError, match="versions \\[2\\]"):
        SchemaRegistry.load(tmp_path)


def test_registry_refuses_a_file_whose_record_does_not_match_its_name(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_SCHEMA_DIR / "PlanChanged.v1.avsc", tmp_path / "PlanChange.v1.avsc")
    with pytest.raises(SchemaRegistryError, match="must define record downloads.PlanChange"):
        SchemaRegistry.load(tmp_path)


def test_registry_refuses_a_badly_named_file(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_SCHEMA_DIR / "PlanChanged.v1.avsc", tmp_path / "PlanChanged.avsc")
    with pytest.raises(SchemaRegistryError, match="expected <Record>.v<N>.avsc"):
        SchemaRegistry.load(tmp_path)


def test_registry_refuses_two_versions_with_the_same_wire_schema(tmp_path: Path) -> None:
    _copy(tmp_path, "PlanChanged.v1")
    declared = json.loads((tmp_path / "PlanChanged.v1.avsc").read_text())
    declared["doc"] = "only the doc differs"
    (tmp_path / "PlanChanged.v2.avsc").write_text(json.dumps(declared))
    with pytest.raises(SchemaRegistryError, match="same fingerprint"):
        SchemaRegistry.load(tmp_path)
