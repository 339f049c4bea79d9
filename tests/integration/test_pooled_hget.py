"""The read API's pooled HGET against the real Redis: the same replies as redis-py's ``hget``, the pool's
books kept, a reply never left on a pooled connection for the next command, a connection the server
closed retried, and redis-py's own path for a client whose commands are wrapped (tracing)."""
from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio

from app.adapters.redis.pooled_hget import pooled_hget
from app.bootstrap import api_reader, redis_sync_client

pytestmark = pytest.mark.stack


@pytest.fixture
def keys(settings):
    prefix = f"test:pooled-hget:{uuid.uuid4().hex[:12]}"
    sync = redis_sync_client(settings)
    sync.hset(f"{prefix}:a", mapping={"state": "A", "bytes": b"\x00\xff\r\n"})
    sync.hset(f"{prefix}:b", "state", "B")
    yield sync, prefix
    sync.delete(f"{prefix}:a", f"{prefix}:b")
    sync.close()


def run_with_client(settings, scenario):
    async def main():
        client = api_reader(settings).client
        try:
            await scenario(client)
        finally:
            await client.aclose()

    asyncio.run(main())


def test_the_replies_are_redis_pys_and_one_connection_serves_a_sequence(settings, keys):
    _, prefix = keys

    async def scenario(client):
        hget = pooled_hget(client)
        asked = [(f"{prefix}:a", "state"), (f"{prefix}:a", "bytes"), (f"{prefix}:a", "missing"),
                 (f"{prefix}:none", "state"), (f"{prefix}:b", "state")]
        assert [await hget(k, f) for k, f in asked] == [await client.hget(k, f) for k, f in asked]
        assert [await hget(k, f) for k, f in asked] == [b"A", b"\x00\xff\r\n", None, None, b"B"]
        pool = client.connection_pool
        assert len(pool._available_connections) == 1 and not pool._in_use_connections

    run_with_client(settings, scenario)


def test_concurrent_reads_each_get_their_own_reply_and_every_connection_goes_back(settings, keys):
    _, prefix = keys

    async def scenario(client):
        hget = pooled_hget(client)
        asked = [f"{prefix}:{'ab'[i % 2]}" for i in range(60)]
        replies = await asyncio.gather(*(hget(k, "state") for k in asked))
        assert replies == [b"A" if k.endswith(":a") else b"B" for k in asked]
        pool = client.connection_pool
        assert not pool._in_use_connections
        assert 1 < len(pool._available_connections) <= 60

    run_with_client(settings, scenario)


def test_a_cancelled_read_leaves_no_reply_for_the_next_command(settings, keys):
    """The next HGET on the pooled connection must read its own reply, not the cancelled one's."""
    sync, prefix = keys

    async def scenario(client):
        hget = pooled_hget(client)
        assert await hget(f"{prefix}:a", "state") == b"A"  # one pooled, connected connection
        sync.client_pause(400, all=True)  # Redis holds every reply for 0.4 s
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(hget(f"{prefix}:a", "state"), timeout=0.1)
        assert await hget(f"{prefix}:b", "state") == b"B"
        assert await hget(f"{prefix}:a", "state") == b"A"
        assert not client.connection_pool._in_use_connections

    run_with_client(settings, scenario)


def test_a_connection_the_server_closed_is_connected_again(settings, keys):
    sync, prefix = keys

    async def scenario(client):
        hget = pooled_hget(client)
        assert await hget(f"{prefix}:a", "state") == b"A"
        own_id = await client.client_id()
        assert sync.client_kill_filter(_id=own_id) == 1
        assert await hget(f"{prefix}:a", "state") == b"A"
        assert await client.client_id() != own_id

    run_with_client(settings, scenario)


def test_a_client_with_wrapped_commands_keeps_redis_pys_path(settings, keys):
    """OpenTelemetry's redis instrumentation wraps execute_command on the instance, after the reader
    was built; its spans need every HGET to go through it."""
    _, prefix = keys

    async def scenario(client):
        hget = pooled_hget(client)
        seen = []
        unwrapped = client.execute_command

        async def wrapped(*args, **options):
            seen.append(args[0])
            return await unwrapped(*args, **options)

        client.execute_command = wrapped
        assert await hget(f"{prefix}:a", "state") == b"A"
        assert seen == ["HGET"]

    run_with_client(settings, scenario)


def test_any_other_client_keeps_its_own_hget():
    class Other:
        async def hget(self, key, field):
            return key, field

    other = Other()
    assert pooled_hget(other) == other.hget
    single = redis.asyncio.Redis(single_connection_client=True)
    assert pooled_hget(single) == single.hget
