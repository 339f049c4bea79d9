"""Projection namespaces in Redis as a whole (the layout is in `app.adapters.redis.view_store`):
whether one holds views, its members, the atomic switch of the active-namespace pointer, deletion."""
from __future__ import annotations

from app.adapters.redis.view_store import ACTIVE_NAMESPACE_KEY, DEFAULT_NAMESPACE, members_key

SCAN_COUNT = 1000
UNLINK_BATCH = 500

# KEYS[1] pointer; ARGV[1] namespace expected active, ARGV[2] new namespace, ARGV[3] default namespace.
# A compare-and-set executed atomically: the pointer moves only if nobody moved it since the replay began.
_SWITCH = """
local current = redis.call('GET', KEYS[1])
if (not current and ARGV[1] == ARGV[3]) or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return {1, current or ARGV[3]}
end
return {0, current or ARGV[3]}
"""


class SwitchRefused(RuntimeError):
    def __init__(self, expected: str, actual: str):
        super().__init__(f"the active namespace is {actual}, not {expected}: another switch happened meanwhile")
        self.expected = expected
        self.actual = actual


def _text(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


async def holds_views(client, ns: str) -> bool:
    """Whether the namespace holds a view: every view write adds its member to the members set."""
    return bool(await client.exists(members_key(ns)))


async def namespace_members(client, ns: str) -> set[str]:
    return {_text(m) async for m in client.sscan_iter(members_key(ns), count=SCAN_COUNT)}


async def switch_active(client, expected: str, new: str) -> None:
    """Point readers at ``new`` in one atomic step, if ``expected`` is still the active namespace."""
    applied, current = await client.eval(_SWITCH, 1, ACTIVE_NAMESPACE_KEY, expected, new, DEFAULT_NAMESPACE)
    if not int(applied):
        raise SwitchRefused(expected, _text(current))


async def delete_namespace(client, ns: str) -> int:
    """UNLINK every key of the namespace (SCAN in batches, never KEYS); returns how many."""
    deleted = 0
    batch: list = []
    async for key in client.scan_iter(match=f"ledger:{ns}:*", count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= UNLINK_BATCH:
            deleted += await client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth retrying for idempotent work (seq-fenced writes, reads): a timeout, a dropped connection."""
    from redis.exceptions import ConnectionError, TimeoutError

    return (ConnectionError, TimeoutError)
