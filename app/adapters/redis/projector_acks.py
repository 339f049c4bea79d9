"""The namespace each live projector writes: one hash, ``ledger:projectors``, field = worker id,
value = ``<namespace> <expiry in ms>``. The expiry is computed from the Redis server's clock
(``TIME`` inside the scripts), so the workers' and the replay's clocks never need to agree. Expired
fields are deleted by both scripts. One key, so one slot on a Redis Cluster; a handful of fields
(one per projector process)."""
from __future__ import annotations

from app.adapters.redis.commands import Script

PROJECTORS_KEY = "ledger:projectors"

_NOW_AND_PRUNE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local value = all[i + 1]
  local space = string.find(value, ' ', 1, true)
  local expires = space and tonumber(string.sub(value, space + 1)) or 0
  if expires > now then
    table.insert(live, all[i])
    table.insert(live, string.sub(value, 1, space - 1))
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
"""

# KEYS[1] the hash; ARGV[1] worker id, ARGV[2] namespace, ARGV[3] time to live (ms).
_ACKNOWLEDGE = Script(_NOW_AND_PRUNE + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. (now + tonumber(ARGV[3])))
return 1
""")

# KEYS[1] the hash. Returns worker id, namespace, worker id, namespace... of the live ones.
_LIVE = Script(_NOW_AND_PRUNE + """
return live
""")


def _text(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisProjectorAcks:
    def __init__(self, client):
        self.client = client

    async def acknowledge(self, worker_id: str, ns: str, ttl_s: float) -> None:
        await _ACKNOWLEDGE.run(self.client, [PROJECTORS_KEY], [worker_id, ns, max(1, round(ttl_s * 1000))])

    async def live(self) -> dict[str, str]:
        flat = await _LIVE.run(self.client, [PROJECTORS_KEY], [])
        return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
