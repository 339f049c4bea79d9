"""Contract tests: every implementation of a port passes the same tests. The in-memory ones run in
the unit tier; the real ones (marked ``stack``) against the local Redis and Cassandra, and the Redis
ones also against the cluster profile's Redis Cluster (marked ``cluster``: skipped unless
`ledger stack up --profile cluster` is running)."""
from __future__ import annotations

import asyncio
import uuid

import pytest

REAL = pytest.mark.stack
CLUSTER = pytest.mark.cluster


def run(coro):
    return asyncio.run(coro)


class Redis:
    """A redis.asyncio client per event loop (each test body runs in its own asyncio.run)."""

    def __init__(self, url: str, prefix: str):
        self.url = url
        self.prefix = prefix

    def client(self):
        """The client the application would build for this URL (a RedisCluster for redis+cluster://)."""
        from app import bootstrap
        from app.config import Settings

        return bootstrap.redis_client(Settings(redis_url=self.url, redis_cluster=False))

    def clean(self) -> None:
        async def go():
            client = self.client()
            keys = [k async for k in client.scan_iter(f"ledger:{self.prefix}*")]
            keys += [k async for k in client.scan_iter(f"ledger:member-clock:{self.prefix}*")]
            for single in ("ledger:active-namespace", "ledger:replay", "ledger:projectors"):
                keys += [k async for k in client.scan_iter(single)]
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


def redis_cluster_url() -> str | None:
    """The cluster profile's Redis Cluster URL when every master answers, else None."""
    from tools.stack.cluster_nodes import REDIS_PORTS, client_env, cluster_info

    try:
        if cluster_info("127.0.0.1", REDIS_PORTS[0])["state"] != "ok":
            return None
    except Exception:  # not running: the cluster tests are skipped
        return None
    return client_env()["LEDGER_REDIS_URL"]


@pytest.fixture
def redis_cluster_space(request):
    """A key prefix of its own on the cluster profile's Redis Cluster, cleaned before and after."""
    url = redis_cluster_url()
    if url is None:
        pytest.skip("the cluster profile is not running (make stack-cluster)")
    request.getfixturevalue("cluster_lock")
    space = Redis(url, f"c{uuid.uuid4().hex[:8]}")
    space.clean()
    yield space
    space.clean()


def redis_space_for(request):
    """The Redis space of a contract fixture's param: ``redis`` (one node) or ``redis-cluster``."""
    return request.getfixturevalue("redis_cluster_space" if request.param == "redis-cluster" else "redis_space")
