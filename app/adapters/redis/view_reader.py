"""The read API's only data access: member views in Redis, in the namespace the pointer names.

Works on one Redis and on a Redis Cluster alike (the keys are in `app.adapters.redis.view_store`).
One Redis round trip per request: the active-namespace pointer is cached for at most
``namespace_ttl`` seconds (default 0.5 s), so a replay's switch is followed within that time. When
it expires, one read of the pointer serves every request that needs it meanwhile: a burst of
requests must not each send a GET (and each take a pooled connection) at the moment the server is
busiest.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from app.adapters.redis.member_clocks import clock_key
from app.adapters.redis.pooled_hget import pooled_hget
from app.adapters.redis.view_store import ACTIVE_NAMESPACE_KEY, DEFAULT_NAMESPACE, all_members_keys, member_key
from app.adapters.view_json import decode_view
from app.domain.state import MemberState

DEFAULT_NAMESPACE_TTL = 0.5


class ViewCorrupt(Exception):
    """A stored view that does not decode: a server-side problem, never the caller's."""


class ViewReader:
    def __init__(self, client, *, pointer_key: str = ACTIVE_NAMESPACE_KEY,
                 namespace_ttl: float = DEFAULT_NAMESPACE_TTL):
        self.client = client
        self.pointer_key = pointer_key
        self.namespace_ttl = namespace_ttl
        self._namespace = DEFAULT_NAMESPACE
        self._expires = float("-inf")
        self._reading: asyncio.Future[str] | None = None

    @property
    def client(self):
        return self._client

    @client.setter
    def client(self, client) -> None:
        self._client = client
        self._hget = pooled_hget(client)

    async def namespace(self, fresh: bool = False) -> str:
        """The active namespace: cached, or read once for every caller waiting on it; ``fresh``
        reads it now, for this caller alone."""
        if fresh:
            return await self._read_pointer()
        if time.monotonic() < self._expires:
            return self._namespace
        # a finished read is never reused: its callers may all have gone before it ended (and a loop
        # that closed, as asyncio.run does, finished its reads)
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read_pointer())
        return await asyncio.shield(self._reading)  # a caller that goes away leaves the read to the others

    async def _read_pointer(self) -> str:
        started = time.monotonic()
        raw = await self.client.get(self.pointer_key)
        namespace = DEFAULT_NAMESPACE if raw is None else (raw.decode() if isinstance(raw, bytes) else raw)
        self._namespace, self._expires = namespace, started + self.namespace_ttl
        return namespace

    async def member(self, member_id: str) -> MemberState | None:
        namespace = await self.namespace()
        raw = await self._hget(member_key(namespace, member_id), "state")
        return None if raw is None else self._decode(raw, member_id, namespace)

    async def member_at_decider_clock(self, member_id: str) -> MemberState | None:
        """The view with its clock raised to the member clock over every decided event (the
        member-clock key, which counts rejections too): one round trip for both keys."""
        namespace = await self.namespace()
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(member_key(namespace, member_id), "state")
        pipe.get(clock_key(member_id))
        raw, clock = await pipe.execute()
        state = None if raw is None else self._decode(raw, member_id, namespace)
        if clock is None:
            return state
        state = state or MemberState.empty(member_id)
        return replace(state, clock=max(state.clock, int(clock)))

    def _decode(self, raw, member_id: str, namespace: str) -> MemberState:
        try:
            return decode_view(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ViewCorrupt(f"view of member {member_id} in namespace {namespace} does not decode: {exc}") from exc

    async def member_count(self) -> tuple[str, int]:
        """(active namespace read fresh, number of members in it): for readiness. One pipeline of
        SCARD over the namespace's member groups (on a cluster, one per master)."""
        namespace = await self.namespace(fresh=True)
        pipe = self.client.pipeline(transaction=False)
        for key in all_members_keys(namespace):
            pipe.scard(key)
        return namespace, sum(int(n) for n in await pipe.execute())
