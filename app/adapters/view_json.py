"""The JSON of a member view, one body for every store that keeps it (Redis views, Cassandra
summaries): `app.domain.state_json.state_to_dict` without processed ids, keys sorted."""
from __future__ import annotations

import json

from app.domain.state import MemberState
from app.domain.state_json import state_from_dict, state_to_dict


def encode_view(state: MemberState) -> str:
    return json.dumps(state_to_dict(state, include_processed=False), separators=(",", ":"), sort_keys=True)


def decode_view(raw: bytes | str) -> MemberState:
    return state_from_dict(json.loads(raw))
