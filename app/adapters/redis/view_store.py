"""The Redis views: one hash per member per projection namespace, written only forward in `seq`.

Layout (``ns`` is the projection namespace, e.g. ``v1``; ``g`` is the member's group, see below):
- ``ledger:active-namespace``                 the namespace readers follow (absent: ``DEFAULT_NAMESPACE``)
- ``ledger:{ns}:member:{{ns}:g{g}}:{member_id}``  hash: ``seq`` (int) and ``state`` (JSON of
                                               ``app.domain.state_json.state_to_dict(state, include_processed=False)``)
- ``ledger:{ns}:members:{{ns}:g{g}}``           set of the member ids of group ``g`` present in the namespace

The braces in the middle are a Redis Cluster hash tag (``{v1:g042}``): a member's hash and the set
that marks it present share one hash slot, so the fenced write below, which touches both, runs on
one master. ``g`` is ``crc32(member_id) mod MEMBER_GROUPS`` (256 groups, three hex digits): the
members of a namespace are spread over 256 slots, so over every master of a cluster, and counting
or listing them reads 256 small sets instead of scanning every key of every master. One Redis
uses the same layout (the tags are ordinary characters there), so both run the same code.

Every write goes through one Lua script that compares ``seq`` atomically: an entry at or below the
stored ``seq`` changes nothing, so redelivery and replays never move a view backwards.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from app.adapters.redis.commands import Script
from app.adapters.view_json import decode_view, encode_view
from app.domain.state import MemberState

ACTIVE_NAMESPACE_KEY = "ledger:active-namespace"
DEFAULT_NAMESPACE = "v1"
MEMBER_GROUPS = 256

# KEYS[1] member hash, KEYS[2] its group's members set; ARGV[1] seq, ARGV[2] state JSON, ARGV[3] member id.
FENCED_WRITE = Script("""
local current = redis.call('HGET', KEYS[1], 'seq')
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'state', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
""")


def member_group(member_id: str) -> int:
    return zlib.crc32(member_id.encode()) % MEMBER_GROUPS


def _tag(ns: str, group: int) -> str:
    return "{" + f"{ns}:g{group:03x}" + "}"


def member_key(ns: str, member_id: str) -> str:
    return f"ledger:{ns}:member:{_tag(ns, member_group(member_id))}:{member_id}"


def members_key(ns: str, member_id: str) -> str:
    """The set that marks ``member_id`` present in ``ns`` (same hash slot as its hash)."""
    return group_members_key(ns, member_group(member_id))


def group_members_key(ns: str, group: int) -> str:
    return f"ledger:{ns}:members:{_tag(ns, group)}"


def all_members_keys(ns: str) -> list[str]:
    """The members sets of every group of ``ns``: together, every member present."""
    return [group_members_key(ns, g) for g in range(MEMBER_GROUPS)]


@dataclass
class RedisViewStore:
    """Async access to the views of one namespace (redis.asyncio Redis or RedisCluster client)."""

    client: object
    ns: str

    async def write_many(self, states: list[MemberState]) -> int:
        """Fenced writes in one pipeline (one per master on a cluster); returns how many moved forward."""
        results = await FENCED_WRITE.run_many(self.client, [
            ([member_key(self.ns, s.member_id), members_key(self.ns, s.member_id)],
             [s.seq, encode_view(s), s.member_id]) for s in states])
        return sum(int(r) for r in results)

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
