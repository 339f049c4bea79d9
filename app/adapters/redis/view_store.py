"""The Redis views: one hash per member per projection namespace, written only forward in `seq`.

Layout (``ns`` is the projection namespace, e.g. ``v1``):
- ``ledger:active-namespace``          the namespace readers follow (absent: ``DEFAULT_NAMESPACE``)
- ``ledger:{ns}:member:{member_id}``   hash: ``seq`` (int) and ``state`` (JSON of
                                        ``app.domain.state_json.state_to_dict(state, include_processed=False)``)
- ``ledger:{ns}:members``              set of member ids present in the namespace

Every write goes through one Lua script that compares ``seq`` atomically: an entry at or below the
stored ``seq`` changes nothing, so redelivery and replays never move a view backwards.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.adapters.view_json import decode_view, encode_view
from app.domain.state import MemberState

ACTIVE_NAMESPACE_KEY = "ledger:active-namespace"
DEFAULT_NAMESPACE = "v1"

# KEYS[1] member hash, KEYS[2] members set; ARGV[1] seq, ARGV[2] state JSON, ARGV[3] member id.
_FENCED_WRITE = """
local current = redis.call('HGET', KEYS[1], 'seq')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'state', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""


def member_key(ns: str, member_id: str) -> str:
    return f"ledger:{ns}:member:{member_id}"


def members_key(ns: str) -> str:
    return f"ledger:{ns}:members"


@dataclass
class RedisViewStore:
    """Async access to the views of one namespace (redis.asyncio client)."""

    client: object  # redis.asyncio.Redis
    ns: str

    def __post_init__(self):
        self._write = self.client.register_script(_FENCED_WRITE)

    async def write_many(self, states: list[MemberState]) -> int:
        """Fenced writes in one pipeline; returns how many moved forward."""
        if not states:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for state in states:
            await self._write(
                keys=[member_key(self.ns, state.member_id), members_key(self.ns)],
                args=[state.seq, encode_view(state), state.member_id], client=pipe)
        return sum(int(r) for r in await pipe.execute())

    async def read(self, member_id: str) -> MemberState | None:
        raw = await self.client.hget(member_key(self.ns, member_id), "state")
        return None if raw is None else decode_view(raw)

    async def read_many(self, member_ids: list[str]) -> dict[str, MemberState]:
        if not member_ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for member_id in member_ids:
            pipe.hget(member_key(self.ns, member_id), "state")
        raws = await pipe.execute()
        return {m: decode_view(r) for m, r in zip(member_ids, raws) if r is not None}

