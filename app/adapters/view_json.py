"""The JSON of a member view, one body for every store that keeps it (Redis views, Cassandra
summaries): `app.domain.state_json.state_to_dict` without processed ids, keys sorted, no spaces.

orjson with OPT_SORT_KEYS writes the same bytes as ``json.dumps(..., separators=(",", ":"),
sort_keys=True)`` did for these dicts (identifiers are ASCII, numbers are integers), about 4x
faster; it reads them about 3x faster (tests/unit/test_view_json.py pins both).

The projector writes each member that moved to Redis and to Cassandra in the same batch: the JSON
is built once per state object for both. `encode_view` remembers the JSON of the last
RECENT_VIEWS states it encoded, by identity (a state is immutable; the entry holds the state, so
its id cannot be reused while it is there).
"""
from __future__ import annotations

from collections import OrderedDict

import orjson

from app.domain.state import MemberState
from app.domain.state_json import state_from_dict, state_to_dict

RECENT_VIEWS = 4096

_recent: OrderedDict[int, tuple[MemberState, str]] = OrderedDict()


def encode_view(state: MemberState) -> str:
    hit = _recent.get(id(state))
    if hit is not None and hit[0] is state:
        return hit[1]
    text = orjson.dumps(state_to_dict(state, include_processed=False), option=orjson.OPT_SORT_KEYS).decode()
    _recent[id(state)] = (state, text)
    if len(_recent) > RECENT_VIEWS:
        _recent.popitem(last=False)
    return text


def decode_view(raw: bytes | str) -> MemberState:
    return state_from_dict(orjson.loads(raw))
