"""Single-object encoding bytes and every DecodeError / EncodeError code."""

from __future__ import annotations

import pytest

from app.adapters.avro import DecodeError, EncodeError, decode, default_registry, encode
from app.adapters.avro.codec import HEADER_SIZE, MARKER

RENEWED = {"license_id": "l1", "expires_at": 1_717_200_000_000}
DOWNLOAD_EVENT = {
    "event_id": "e1",
    "member_id": "m1",
    "occurred_at": 1_717_200_000_000,
    "producer": "test",
    "event": ("downloads.LicenseReleased", {"license_id": "l1", "reason": "DELETED"}),
}


def test_single_object_layout_marker_little_endian_fingerprint_then_body() -> None:
    data = encode("LicenseRenewed", RENEWED)
    fingerprint = default_registry().latest("LicenseRenewed").fingerprint

    assert data[:2] == b"\xc3\x01" == MARKER
    assert data[2:10] == fingerprint.to_bytes(8, "little")
    assert data[2:10] == bytes.fromhex("03780c18e2650211")  # 0x110265e2180c7803, low byte first
    # body: string "l1" (zigzag length 2 -> 0x04), then zigzag varint of the long
    assert data[10:13] == b"\x04l1"
    assert len(data) == HEADER_SIZE + 3 + 6


def test_decode_returns_name_writer_version_and_datum() -> None:
    assert decode(encode("LicenseRenewed", RENEWED)) == ("LicenseRenewed", 1, RENEWED)
    assert decode(encode("DownloadEvent", DOWNLOAD_EVENT), "DownloadEvent") == ("DownloadEvent", 2, DOWNLOAD_EVENT)


def test_timestamps_stay_integer_milliseconds() -> None:
    _, _, datum = decode(encode("LicenseRenewed", {"license_id": "l1", "expires_at": 2**62}))
    assert datum["expires_at"] == 2**62  # far outside datetime's range: no logical-type conversion


def _code(data: bytes, record_name: str | None = None) -> str:
    with pytest.raises(DecodeError) as raised:
        decode(data, record_name)
    assert raised.value.message and raised.value.code in str(raised.value)
    return raised.value.code


GOOD = encode("DownloadEvent", DOWNLOAD_EVENT)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(b"\x00\x01" + GOOD[2:], "bad_marker", id="bad_marker"),
        pytest.param(b"{\"json\": true}", "bad_marker", id="bad_marker-json"),
        pytest.param(b"\xc3", "truncated", id="truncated-marker"),
        pytest.param(b"", "truncated", id="truncated-empty"),
        pytest.param(GOOD[:7], "truncated", id="truncated-header"),
        pytest.param(GOOD[:HEADER_SIZE], "truncated", id="truncated-no-body"),
        pytest.param(GOOD[:-3], "truncated", id="truncated-body"),
        pytest.param(MARKER + bytes(8) + GOOD[10:], "unknown_fingerprint", id="unknown_fingerprint"),
        pytest.param(GOOD + b"\x00", "out_of_schema", id="out_of_schema-trailing-bytes"),
        pytest.param(GOOD[:10] + b"\x02e\x02m\x02\x02p\x0e", "out_of_schema", id="out_of_schema-union-index"),
        pytest.param(GOOD[:10] + b"\x02\xff", "out_of_schema", id="out_of_schema-utf8"),
        pytest.param(GOOD[:10] + b"\x03", "out_of_schema", id="out_of_schema-negative-length"),
    ],
)
def test_decode_error_codes(data: bytes, code: str) -> None:
    assert _code(data) == code


def test_decode_error_message_names_the_unknown_fingerprint() -> None:
    with pytest.raises(DecodeError, match="0x0807060504030201"):
        decode(MARKER + bytes([1, 2, 3, 4, 5, 6, 7, 8]) + b"\x00")


def test_schema_mismatch_when_another_record_is_expected() -> None:
    assert _code(GOOD, "LedgerEntry") == "schema_mismatch"


def test_schema_mismatch_when_resolution_is_impossible() -> None:
    v1_snapshot = encode("MemberSnapshot", _v1_snapshot(), version=1)
    with pytest.raises(DecodeError, match="MemberSnapshot v1 cannot be read as MemberSnapshot v2") as raised:
        decode(v1_snapshot)
    assert raised.value.code == "schema_mismatch"


def _v1_snapshot() -> dict:
    return {
        "member_id": "m1", "seq": 0, "clock": 0, "rejections_since_seq": 0,
        "plan": {"plan_id": "default", "device_limit": 1, "downloads_per_device": 100, "monthly_limit": None},
        "licenses": [], "title_year_downloads": [], "month_downloads": {}, "processed_event_ids": [],
    }


@pytest.mark.parametrize(
    "datum",
    [
        pytest.param({"license_id": "l1"}, id="missing-field"),
        pytest.param({"license_id": None, "expires_at": 1}, id="null-string"),
        pytest.param({"license_id": "l1", "expires_at": "soon"}, id="string-for-long"),
        pytest.param({"license_id": "l1", "expires_at": 1.5}, id="float-for-long"),
        pytest.param({"license_id": "l1", "expires_at": True}, id="bool-for-long"),
        pytest.param({"license_id": "l1", "expires_at": 2**63}, id="long-overflow"),
    ],
)
def test_encoding_a_value_out_of_schema_raises_encode_error(datum: dict) -> None:
    with pytest.raises(EncodeError, match="LicenseRenewed v1") as raised:
        encode("LicenseRenewed", datum)
    assert raised.value.code == "out_of_schema"


def test_encoding_an_unknown_union_branch_raises_encode_error() -> None:
    with pytest.raises(EncodeError) as raised:
        encode("DownloadEvent", {**DOWNLOAD_EVENT, "event": ("downloads.Nope", {})})
    assert raised.value.code == "out_of_schema"


def test_encoding_an_unknown_record_or_version_raises_encode_error() -> None:
    for name, version in [("Nope", None), ("DownloadEvent", 9)]:
        with pytest.raises(EncodeError) as raised:
            encode(name, {}, version)
        assert raised.value.code == "unknown_schema"


def test_decode_errors_and_malformed_events_are_different_errors() -> None:
    from app.domain import MalformedEvent

    assert not issubclass(MalformedEvent, DecodeError) and not issubclass(DecodeError, MalformedEvent)


ACQUIRED_V1 = {
    **DOWNLOAD_EVENT,
    "occurred_at": 2**62,  # a 9-byte varint: many places to cut it
    "event": ("downloads.LicenseAcquired", {
        "license_id": "l1", "device_id": "d1", "title_id": "t1", "studio_id": "s1", "expires_at": -(2**40),
        "title_yearly_limit": 3, "studio_concurrent_limit": None, "max_renewals": 2**30}),
}


@pytest.mark.parametrize("version", [1, 2])
def test_a_message_cut_anywhere_is_truncated_even_inside_a_varint(version: int) -> None:
    """Found by tests/e2e/test_fuzz.py: a body cut in the middle of a varint (a long, an int, a
    length, a union index) made fastavro raise IndexError, not EOFError, and the dead letter said
    out_of_schema. Every proper prefix of a valid message is `truncated`."""
    data = encode("DownloadEvent", ACQUIRED_V1, version=version)
    codes = {n: _code(data[:n]) for n in range(len(data))}
    assert {n: c for n, c in codes.items() if c != "truncated"} == {}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b"\x02e\x02m\x02\x02p\x0e", "out_of_schema", id="bad-union-index-as-last-byte"),
        pytest.param(b"\x02e\x02m\x02\x02p\x06\x02x\x02\xff", "out_of_schema", id="bad-utf8-in-the-last-field"),
        pytest.param(b"\x02e\x02m\x80", "truncated", id="cut-after-a-continuation-byte"),
        pytest.param(b"\x02e\x02m\x02\x02p\x04\x02l\x80\x80", "truncated", id="cut-in-the-last-field"),
    ],
)
def test_a_corrupt_last_byte_is_out_of_schema_and_a_cut_varint_is_truncated(body: bytes, code: str) -> None:
    assert _code(GOOD[:HEADER_SIZE] + body) == code


# --- each event encoded once: ledger entries and rejections spliced around its bytes -----------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from app.adapters.avro import mapping  # noqa: E402
from app.domain.events import DownloadEvent, Recorded  # noqa: E402
from app.domain.history import Source  # noqa: E402
from tests.support.strategies import payloads  # noqa: E402

texts = st.text(min_size=0, max_size=30)
longs = st.integers(-(1 << 63), (1 << 63) - 1)
sources = st.builds(Source, texts, st.integers(-(1 << 31), (1 << 31) - 1), longs)
events = st.builds(DownloadEvent, texts, texts, longs, texts, payloads)


@settings(max_examples=300, deadline=None)
@given(events, longs, longs, sources, texts, texts)
def test_a_spliced_ledger_entry_and_rejection_are_the_codecs_own_bytes(event, seq, clock, source, reason,
                                                                       detail) -> None:
    assert mapping._splice_ok()
    recorded = Recorded(seq=seq, clock=clock, event=event)
    assert mapping.encode_ledger_entry(recorded, source) == encode(
        "LedgerEntry", mapping.ledger_entry_to_avro(recorded, source))
    assert mapping.encode_rejection(event, reason, detail, clock, source) == encode(
        "Rejection", mapping.rejection_to_avro(event, reason, detail, clock, source))
    assert mapping.decode_ledger_entry(mapping.encode_ledger_entry(recorded, source)).recorded == recorded


def test_an_event_is_encoded_once_while_it_is_recent(monkeypatch) -> None:
    event = DownloadEvent("e1", "m1", 1, "p", mapping._PAYLOAD_CLASS["downloads.DeviceDeactivated"]("d1"))
    first = mapping.encode_event(event)
    monkeypatch.setattr(mapping, "default_codec", lambda: pytest.fail("encoded again"))
    assert mapping.encode_event(event) is first
    assert mapping._event_body(event) == first[HEADER_SIZE:]


def test_a_value_out_of_its_avro_type_is_refused() -> None:
    with pytest.raises(EncodeError):
        mapping._int(1 << 31)
    with pytest.raises(EncodeError):
        mapping._long(1 << 63)
