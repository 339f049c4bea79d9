"""Member state building blocks: processed ids, UTC calendar, JSON form, domain purity."""

from __future__ import annotations

import ast
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import app.domain
from app.domain import PROCESSED_IDS_BOUND, MemberState, state_from_dict, state_to_dict
from app.domain.processed_ids import ProcessedIds
from app.domain.utc import format_ms, year_month
from tests.support.domain_builders import DAY, T0, acquire, event, plan, renew, run


def test_processed_ids_keep_at_least_the_latest_bound_ids_and_forget_older_ones() -> None:
    ids = ProcessedIds()
    total = PROCESSED_IDS_BOUND * 2 + 77
    for i in range(total):
        ids = ids.add(f"e{i}")

    assert PROCESSED_IDS_BOUND <= len(ids) < PROCESSED_IDS_BOUND + 256  # bounded: evicts in chunks
    assert all(f"e{i}" in ids for i in range(total - PROCESSED_IDS_BOUND, total))
    assert "e0" not in ids
    assert list(ids)[-1] == f"e{total - 1}"


def test_processed_ids_are_persistent_values() -> None:
    empty = ProcessedIds()
    one = empty.add("a")
    assert "a" not in empty and "a" in one
    assert one.add("a") is one
    assert ProcessedIds.of(["a", "b"]) == empty.add("a").add("b")
    assert ProcessedIds.of(["a", "b"]) != ProcessedIds.of(["b", "a"])


def test_processed_ids_rebuilt_from_their_listing_are_equal() -> None:
    ids = ProcessedIds.of(f"e{i}" for i in range(PROCESSED_IDS_BOUND + 500))
    assert ProcessedIds.of(list(ids)) == ids


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_year_month_matches_datetime(ms: int) -> None:
    instant = datetime.fromtimestamp(ms // 1000, UTC)
    assert year_month(ms) == (instant.year, instant.month)


def test_year_month_edges_and_far_timestamps() -> None:
    assert year_month(0) == (1970, 1)
    assert year_month(-1) == (1969, 12)
    assert year_month(1_735_689_599_999) == (2024, 12)  # 2024-12-31T23:59:59.999Z
    assert year_month(1_735_689_600_000) == (2025, 1)
    assert year_month(2**63 - 1)[0] > 9999  # no datetime overflow
    assert format_ms(2**63 - 1) == f"{2**63 - 1} ms"
    assert format_ms(T0) == "2024-06-01T00:00:00.000Z"


def _some_state() -> MemberState:
    _, state = run(
        [event(plan(device_limit=2, monthly_limit=9)), event(acquire("l1")), event(renew("l1")),
         event(acquire("l2", "d2", title="t2", max_renewals=3, studio_concurrent_limit=4), T0 + DAY),
         event(renew("nope"))]
    )
    return state


def test_state_json_round_trip_through_json_text() -> None:
    state = _some_state()
    text = json.dumps(state_to_dict(state))
    assert state_from_dict(json.loads(text)) == state


def test_state_json_without_processed_ids() -> None:
    state = _some_state()
    data = state_to_dict(state, include_processed=False)
    assert "processed_event_ids" not in data
    restored = state_from_dict(data)
    assert restored.licenses == state.licenses and restored.clock == state.clock
    assert len(restored.processed) == 0


def test_states_compare_by_value() -> None:
    def build() -> MemberState:
        return run([event(acquire("l1"), event_id="a"), event(renew("l1"), event_id="b")])[1]

    assert build() == build()
    assert build() != run([event(acquire("l1"), event_id="a")])[1]
    assert MemberState.empty("m1") == MemberState.empty("m1")
    assert MemberState.empty("m1") != MemberState.empty("m2")


def test_domain_imports_only_the_standard_library_and_itself() -> None:
    package_dir = Path(app.domain.__file__).parent
    for path in package_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert module.startswith("app.domain") or top in sys.stdlib_module_names or top == "__future__", (
                    f"{path.name} imports {module}"
                )
