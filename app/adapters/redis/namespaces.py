"""Projection namespaces in Redis as a whole (the layout is in `app.adapters.redis.view_store`):
the active-namespace pointer with its atomic switch, and the namespaces' views as a whole (which
exist, their members, deletion).

On a Redis Cluster the namespace's keys are spread over every master: SCAN runs on each master
(the cluster client's ``scan_iter``), UNLINK is sent per hash slot, and the members are read from
the namespace's per-group sets (``all_members_keys``), never from one namespace-wide key."""
from __future__ import annotations

import re

from app.adapters.redis.commands import Script
from app.adapters.redis.view_store import ACTIVE_NAMESPACE_KEY, DEFAULT_NAMESPACE, all_members_keys
from app.service.ports import SwitchRefused

SCAN_COUNT = 1000
UNLINK_BATCH = 500

# KEYS[1] pointer; ARGV[1] namespace expected active, ARGV[2] new namespace, ARGV[3] default namespace.
# A compare-and-set executed atomically: the pointer moves only if nobody moved it since the replay began.
_SWITCH = Script("""
local current = redis.call('GET', KEYS[1])
if (not current and ARGV[1] == ARGV[3]) or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return {1, current or ARGV[3]}
end
return {0, current or ARGV[3]}
""")


def _text(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


# A members set of the current layout (ledger:v1:members:{v1:g0a3}) or of the layout before hash
# tags (ledger:v1:members), so that a namespace written by an older release is seen and can be dropped.
_MEMBERS_KEY = re.compile(r"^ledger:([^:{}]+):members(:\{[^}]*\})?$")


class RedisNamespacePointer:
    """``ledger:active-namespace``: the namespace the API and the live projector follow."""

    def __init__(self, client):
        self.client = client

    async def active(self) -> str:
        raw = await self.client.get(ACTIVE_NAMESPACE_KEY)
        return DEFAULT_NAMESPACE if raw is None else _text(raw)

    async def switch(self, expected: str, new: str) -> None:
        """Point readers at ``new`` in one atomic step, if ``expected`` is still the active namespace."""
        applied, current = await _SWITCH.run(self.client, [ACTIVE_NAMESPACE_KEY], [expected, new, DEFAULT_NAMESPACE])
        if not int(applied):
            raise SwitchRefused(expected, _text(current))


class RedisNamespaces:
    """The NamespaceStore of the Redis views."""

    name = "redis"

    def __init__(self, client):
        self.client = client

    def check(self, ns: str) -> None:
        if not ns or any(c in ns for c in ":{}*?[]"):
            raise ValueError(f"projection namespace {ns!r} cannot be used in Redis keys")

    async def namespaces(self) -> set[str]:
        found = set()
        async for key in self.client.scan_iter(match="ledger:*:members*", count=SCAN_COUNT):
            if (m := _MEMBERS_KEY.match(_text(key))) is not None:
                found.add(m.group(1))
        return found

    async def holds_data(self, ns: str) -> bool:
        """Whether the namespace holds a view: every view write adds its member to its group's set."""
        return bool(await self.client.exists(*all_members_keys(ns)))

    async def members(self, ns: str) -> set[str]:
        pipe = self.client.pipeline(transaction=False)
        for key in all_members_keys(ns):
            pipe.scard(key)
        sizes = await pipe.execute()
        found: set[str] = set()
        for key, size in zip(all_members_keys(ns), sizes):
            if int(size):
                found.update([_text(m) async for m in self.client.sscan_iter(key, count=SCAN_COUNT)])
        return found

    async def create(self, ns: str) -> None:
        """Nothing to create: keys appear with the first write."""

    async def drop(self, ns: str) -> int:
        """UNLINK every key of the namespace (SCAN in batches on every master, never KEYS); returns how many."""
        deleted = 0
        batch: list = []
        async for key in self.client.scan_iter(match=f"ledger:{ns}:*", count=SCAN_COUNT):
            batch.append(key)
            if len(batch) >= UNLINK_BATCH:
                deleted += await self.client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await self.client.unlink(*batch)
        return deleted


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth retrying for idempotent work (seq-fenced writes, reads): a timeout, a dropped
    connection, and on a cluster a master failing over (its slots answer CLUSTERDOWN or TRYAGAIN,
    or move, until a replica is promoted)."""
    from redis.exceptions import ClusterError, ConnectionError, SlotNotCoveredError, TimeoutError, TryAgainError

    return (ConnectionError, TimeoutError, ClusterError, SlotNotCoveredError, TryAgainError)
