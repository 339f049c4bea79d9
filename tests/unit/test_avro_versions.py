"""Data versioning: compatibility of consecutive versions, old and new readers, the snapshot upcaster."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from app.adapters.avro import Codec, DecodeError, SchemaRegistry, decode, decode_stored, default_registry, encode
from app.adapters.avro.mapping import decode_event, decode_snapshot, encode_event
from app.adapters.avro.registry import DEFAULT_SCHEMA_DIR
from app.adapters.avro.upcasters import UPCASTERS, member_snapshot_v1_to_v2
from app.domain import MemberState
from tests.support.domain_builders import T0, acquire, event, plan

CONSECUTIVE = [
    (name, version)
    for name in default_registry().names()
    for version in range(1, default_registry().latest(name).version)
]


def _compatibility(reader: int, writer: int, name: str) -> SchemaCompatibilityType:
    def parse(version: int):
        return avro.schema.parse(default_registry().get(name, version).path.read_text())

    return ReaderWriterCompatibilityChecker().get_compatibility(parse(reader), parse(writer)).compatibility


@pytest.mark.parametrize(("name", "version"), CONSECUTIVE, ids=[f"{n}.v{v}-v{v + 1}" for n, v in CONSECUTIVE])
def test_each_version_is_backward_and_forward_compatible_with_the_one_before(name: str, version: int) -> None:
    backward = _compatibility(reader=version + 1, writer=version, name=name)
    forward = _compatibility(reader=version, writer=version + 1, name=name)
    if (name, version) in UPCASTERS:
        # A deliberate structural change: resolution cannot express it, an explicit upcaster does.
        assert backward == SchemaCompatibilityType.incompatible
    else:
        assert backward == SchemaCompatibilityType.compatible
        assert forward == SchemaCompatibilityType.compatible


def test_there_are_versioned_records_to_check() -> None:
    assert ("LicenseAcquired", 1) in CONSECUTIVE and ("DownloadEvent", 1) in CONSECUTIVE
    assert ("MemberSnapshot", 1) in CONSECUTIVE


@pytest.fixture(scope="module")
def old_code() -> Codec:
    """A consumer built against the v1 contracts; it knows the v2 writer schemas, it reads into v1."""
    return Codec(default_registry(), reader_versions={"LicenseAcquired": 1, "DownloadEvent": 1})


@pytest.fixture(scope="module")
def v1_only_codec(tmp_path_factory) -> Codec:
    """A consumer whose schema directory predates every v2 file."""
    directory = tmp_path_factory.mktemp("v1_schemas")
    for path in DEFAULT_SCHEMA_DIR.glob("*.v1.avsc"):
        shutil.copy(path, directory / path.name)
    return Codec(SchemaRegistry.load(directory))


ACQUIRED_V2 = {
    "license_id": "l1", "device_id": "d1", "title_id": "t1", "studio_id": "s1", "expires_at": T0,
    "title_yearly_limit": 3, "studio_concurrent_limit": None, "max_renewals": 0, "download_quality": "UHD",
}
ACQUIRED_V1 = {k: v for k, v in ACQUIRED_V2.items() if k != "download_quality"}


def test_license_acquired_v1_bytes_read_by_v2_code_get_the_default() -> None:
    data = encode("LicenseAcquired", ACQUIRED_V1, version=1)
    assert decode(data) == ("LicenseAcquired", 1, {**ACQUIRED_V1, "download_quality": None})


def test_license_acquired_v2_bytes_read_by_v1_code_drop_the_new_field(old_code: Codec) -> None:
    data = encode("LicenseAcquired", ACQUIRED_V2)
    assert old_code.decode(data) == ("LicenseAcquired", 2, ACQUIRED_V1)


def test_old_code_writes_its_own_version(old_code: Codec) -> None:
    data = old_code.encode("LicenseAcquired", ACQUIRED_V1)
    assert decode(data) == ("LicenseAcquired", 1, {**ACQUIRED_V1, "download_quality": None})


def test_v2_bytes_are_unknown_to_code_without_the_v2_schema_file(v1_only_codec: Codec) -> None:
    # Why a new schema file must reach every consumer before any producer writes it.
    with pytest.raises(DecodeError) as raised:
        v1_only_codec.decode(encode("LicenseAcquired", ACQUIRED_V2))
    assert raised.value.code == "unknown_fingerprint"


def test_download_event_v1_bytes_read_by_v2_code() -> None:
    ev = event(acquire(quality=None))
    data = encode_event(ev, version=1)
    assert decode(data)[:2] == ("DownloadEvent", 1)
    assert decode_event(data) == ev


def test_download_event_v2_bytes_read_by_v1_code(old_code: Codec) -> None:
    ev = event(acquire(quality="HD"))
    data = encode_event(ev)
    name, version, datum = old_code.decode(data)
    assert (name, version) == ("DownloadEvent", 2)
    assert "download_quality" not in datum["event"][1]
    assert decode_event(data, codec=old_code) == replace(ev, payload=replace(ev.payload, download_quality=None))


def test_download_event_round_trip_through_v1_code(v1_only_codec: Codec) -> None:
    ev = event(plan(device_limit=2))
    assert decode_event(encode_event(ev, codec=v1_only_codec), codec=v1_only_codec) == ev


V1_SNAPSHOT = {
    "member_id": "m1", "seq": 3, "clock": T0, "rejections_since_seq": 1,
    "plan": {"plan_id": "default", "device_limit": 1, "downloads_per_device": 100, "monthly_limit": None},
    "licenses": [
        {"license_id": "l1", "device_id": "d1", "title_id": "t1", "studio_id": "s1", "expires_at": T0 + 1,
         "renewals": 1, "max_renewals": None, "title_yearly_limit": 5, "studio_concurrent_limit": None,
         "released": False}
    ],
    "title_year_downloads": [{"title_id": "t1", "year": 2024, "count": 2}],
    "month_downloads": {"2024-06": 1, "2023-12": 1},
    "processed_event_ids": ["a", "b", "c", "d"],
}


def test_v1_snapshot_bytes_decode_to_the_v2_shape_through_the_upcaster() -> None:
    data = encode("MemberSnapshot", V1_SNAPSHOT, version=1)

    name, writer_version, datum = decode_stored(data)

    assert (name, writer_version) == ("MemberSnapshot", 1)
    assert datum["month_downloads"] == [
        {"year": 2023, "month": 12, "count": 1},
        {"year": 2024, "month": 6, "count": 1},
    ]
    state = decode_snapshot(data)
    assert isinstance(state, MemberState)
    assert state.month_downloads == {(2023, 12): 1, (2024, 6): 1}
    assert (state.seq, state.rejections_since_seq, list(state.processed)) == (3, 1, ["a", "b", "c", "d"])


def test_member_snapshot_upcaster_step_alone() -> None:
    upcast = member_snapshot_v1_to_v2({**V1_SNAPSHOT, "month_downloads": {"2025-01": 4}})
    assert upcast["month_downloads"] == [{"year": 2025, "month": 1, "count": 4}]
    assert upcast["licenses"] == V1_SNAPSHOT["licenses"]


def test_a_snapshot_that_cannot_be_upcast_is_a_decode_error() -> None:
    data = encode("MemberSnapshot", {**V1_SNAPSHOT, "month_downloads": {"June": 1}}, version=1)
    with pytest.raises(DecodeError) as raised:
        decode_snapshot(data)
    assert raised.value.code == "schema_mismatch"


def test_a_snapshot_in_an_unknown_schema_is_a_decode_error(v1_only_codec: Codec) -> None:
    data = encode("MemberSnapshot", {**V1_SNAPSHOT, "month_downloads": []})  # v2 bytes
    with pytest.raises(DecodeError) as raised:
        decode_snapshot(data, codec=v1_only_codec)  # code that only knows v1
    assert raised.value.code == "unknown_fingerprint"


def test_decode_stored_resolves_plain_versions_without_upcasters() -> None:
    data = encode("LicenseAcquired", ACQUIRED_V1, version=1)
    assert decode_stored(data) == ("LicenseAcquired", 1, {**ACQUIRED_V1, "download_quality": None})


def test_decode_stored_mixes_upcasters_and_resolution_step_by_step(tmp_path: Path) -> None:
    # A v3 added after the upcast step: v1 -> v2 by upcaster, then v2 -> v3 by schema resolution.
    for path in DEFAULT_SCHEMA_DIR.glob("MemberSnapshot.v*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    v3 = json.loads((tmp_path / "MemberSnapshot.v2.avsc").read_text())
    v3["fields"].append({"name": "note", "type": "string", "default": "none"})
    (tmp_path / "MemberSnapshot.v3.avsc").write_text(json.dumps(v3))
    codec = Codec(SchemaRegistry.load(tmp_path))

    _, version, datum = decode_stored(codec.encode("MemberSnapshot", V1_SNAPSHOT, 1), codec=codec)

    assert version == 1
    assert datum["note"] == "none"
    assert datum["month_downloads"][0] == {"year": 2023, "month": 12, "count": 1}
