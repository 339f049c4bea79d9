"""Contract tests: every implementation of a port passes the same tests. The in-memory ones run in
the unit tier; the real ones (marked ``stack``) against the local Redis and Cassandra."""
from __future__ import annotations

import asyncio
import uuid

import pytest

REAL = pytest.mark.stack


def run(coro):
    return asyncio.run(coro)


class Redis:
    """A redis.asyncio client per event loop (each test body runs in its own asyncio.run)."""

    def __init__(self, url: str, prefix: str):
        self.url = url
        self.prefix = prefix

    def client(self):
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(self.url)

    def clean(self) -> None:
        async def go():
            client = self.client()
            keys = [k async for k in client.scan_iter(f"ledger:{self.prefix}*")]
            keys += [k async for k in client.scan_iter("ledger:active-namespace")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
        run(go())


@pytest.fixture
def redis_space(settings):
    """A Redis DB of the local stack leased to this test alone, cleaned before and after."""
    from tests.support.pipeline import redis_db_lease

    with redis_db_lease() as db:
        url = settings.redis_url.rsplit("/", 1)[0] + f"/{db}"
        space = Redis(url, f"c{uuid.uuid4().hex[:8]}")
        space.clean()
        yield space
        space.clean()
