"""Member clocks in Redis: ``ledger:member-clock:{member_id}`` holds the highest decided clock (ms).

Outside the projection namespaces on purpose: the clock is a fact about decisions, only ever
raised (a Lua max), so a replay never needs to rebuild it. Each script touches one key, so on a
Redis Cluster the clocks spread over every slot; reads are one MGET per slot there."""
from __future__ import annotations

from app.adapters.redis.commands import Script, get_many

# KEYS[1] the member's clock; ARGV[1] a clock. Raises the stored clock to ARGV[1] if it is lower.
_ADVANCE = Script("""
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
""")


def clock_key(member_id: str) -> str:
    return f"ledger:member-clock:{member_id}"


class RedisMemberClocks:
    def __init__(self, client):
        self.client = client

    async def advance(self, clocks: dict[str, int]) -> None:
        await _ADVANCE.run_many(self.client, [([clock_key(m)], [c]) for m, c in clocks.items()])

    async def read_many(self, member_ids: list[str]) -> dict[str, int]:
        if not member_ids:
            return {}
        raws = await get_many(self.client, [clock_key(m) for m in member_ids])
        return {m: int(r) for m, r in zip(member_ids, raws) if r is not None}
