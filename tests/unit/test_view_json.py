"""The view JSON: orjson writes the bytes the standard library wrote, and each state is encoded once."""

from __future__ import annotations

import json

from hypothesis import given, settings

from app.adapters import view_json
from app.adapters.view_json import decode_view, encode_view
from app.domain import MemberState, state_to_dict
from tests.support.domain_builders import run
from tests.support.strategies import streams


@settings(max_examples=200, deadline=None)
@given(streams())
def test_the_view_json_is_the_standard_librarys_sorted_compact_json_and_reads_back(events) -> None:
    _, state = run(events)
    text = encode_view(state)

    assert text == json.dumps(state_to_dict(state, include_processed=False), separators=(",", ":"), sort_keys=True)
    back = decode_view(text)
    assert decode_view(text.encode()) == back
    assert state_to_dict(back, include_processed=False) == state_to_dict(state, include_processed=False)


def test_a_state_is_encoded_once_while_it_is_recent_and_an_equal_new_state_is_encoded_again(monkeypatch) -> None:
    calls = []
    real = view_json.state_to_dict
    monkeypatch.setattr(view_json, "state_to_dict", lambda *a, **k: calls.append(1) or real(*a, **k))
    state = MemberState.empty("m-once")

    first = encode_view(state)
    assert encode_view(state) is first  # the Redis view and the Cassandra summary of one batch
    assert len(calls) == 1
    assert encode_view(MemberState.empty("m-once")) == first
    assert len(calls) == 2
    assert len(view_json._recent) <= view_json.RECENT_VIEWS
