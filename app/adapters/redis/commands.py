"""What the Redis adapters send, the same on one Redis and on a Redis Cluster.

The adapters take either a ``redis.asyncio.Redis`` or a ``redis.asyncio.cluster.RedisCluster``.
Most commands behave alike on both (the cluster client routes a key's command to the master of
its slot, runs SCAN and SCRIPT LOAD on every master, splits EXISTS/UNLINK of many keys by slot).
Three do not, and go through here:

- Lua scripts in a pipeline: the single-node pipeline loads a missing script before it runs; the
  cluster pipeline refuses ``evalsha`` outright, and a master that never saw the script (a new one,
  or a replica just promoted: the script cache is not replicated) answers NOSCRIPT.
  ``Script.run_many`` sends EVALSHA itself, loads the script where it was missing and runs again.
- MGET of keys in different slots: a cluster refuses it (CROSSSLOT); ``get_many`` splits by slot.
- SCAN: a cluster's keys live on several masters; the cluster client's ``scan_iter`` walks each.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence


def is_cluster(client) -> bool:
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


class Script:
    """A Lua script run by its SHA1, loaded again wherever Redis answers NOSCRIPT."""

    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def run(self, client, keys: Sequence[str], args: Sequence) -> object:
        return (await self.run_many(client, [(keys, args)]))[0]

    async def run_many(self, client, calls: list[tuple[Sequence[str], Sequence]]) -> list:
        """Every call in one pipeline (on a cluster: one per master); results in order. Each call's
        keys must share a hash slot on a cluster. A call that hit NOSCRIPT did not run, so running
        the batch again after loading the script is safe for these scripts (fenced or max-only)."""
        from redis.exceptions import NoScriptError

        if not calls:
            return []
        for _attempt in range(3):
            pipe = client.pipeline(transaction=False)
            for keys, args in calls:
                # execute_command, not pipe.evalsha: redis-py's cluster pipeline blocks the evalsha
                # method (it does not load scripts), yet routes EVALSHA by its keys' slot like any
                # keyed command; NOSCRIPT is handled here.
                pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in results):
                break
            # On a cluster SCRIPT LOAD goes to every master (redis-py's default for it).
            await client.script_load(self.source)
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results


async def get_many(client, keys: list[str]) -> list:
    """GET of many keys, in order; on a cluster one MGET per slot."""
    if not keys:
        return []
    if is_cluster(client):
        return await client.mget_nonatomic(keys)
    return await client.mget(keys)
