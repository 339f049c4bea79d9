"""The read API's pooled HGET against the real Redis: the same replies as redis-py's ``hget``, the pool's
books kept, a reply never left on a pooled connection for the next command, a connection the server
closed retried, and redis-py's own path for a client whose commands are wrapped (tracing)."""
from __future__ import annotations

import asyncio
import functools
import uuid

import pytest
import redis.asyncio

from app.adapters.redis.pooled_hget import pooled_hget
from app.bootstrap import api_reader, redis_client, redis_sync_client

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


def run_warmed(settings, prefix, scenario):
    """``run_with_client`` with ``scenario(client, hget)``: the pooled HGET has read key ``a`` once, so
    one connected connection sits idle in the pool."""

    async def warmed(client):
        hget = pooled_hget(client)
        assert await hget(f"{prefix}:a", "state") == b"A"
        await scenario(client, hget)

    run_with_client(settings, warmed)


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
    """The next HGET on the pooled connection must read its own reply, not the cancelled one's. redis-py's
    read disconnects a cancelled read itself; this holds the property whichever layer keeps it."""
    sync, prefix = keys

    async def scenario(client, hget):
        sync.client_pause(400, all=True)  # Redis holds every reply for 0.4 s
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(hget(f"{prefix}:a", "state"), timeout=0.1)
        assert await hget(f"{prefix}:b", "state") == b"B"
        assert await hget(f"{prefix}:a", "state") == b"A"
        assert not client.connection_pool._in_use_connections

    run_warmed(settings, prefix, scenario)


def test_a_connection_is_in_use_while_its_read_waits_and_idle_after(settings, keys):
    sync, prefix = keys

    async def scenario(client, hget):
        pool = client.connection_pool
        sync.client_pause(300, all=True)
        read = asyncio.ensure_future(hget(f"{prefix}:b", "state"))
        await until(lambda: len(pool._in_use_connections) == 1)
        assert not pool._available_connections
        assert await read == b"B"
        assert len(pool._available_connections) == 1 and not pool._in_use_connections

    run_warmed(settings, prefix, scenario)


def test_an_idle_connection_holding_an_unread_reply_is_not_read_from(settings, keys):
    """A reply left on a pooled connection (what redis-py's ensure_connection guards against) is never
    taken for the next command's."""
    _, prefix = keys

    async def scenario(client, hget):
        (conn,) = client.connection_pool._available_connections
        await conn.send_command("PING")  # its PONG is left unread on the idle connection
        await until(conn.can_read)
        assert await hget(f"{prefix}:b", "state") == b"B"
        assert await hget(f"{prefix}:a", "state") == b"A"

    run_warmed(settings, prefix, scenario)


def test_an_error_reply_is_raised_and_keeps_its_connection(settings, keys):
    sync, prefix = keys
    sync.set(f"{prefix}:string", "not a hash")

    async def scenario(client, hget):
        own_id = await client.client_id()
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
            await hget(f"{prefix}:string", "state")
        assert await hget(f"{prefix}:a", "state") == b"A"
        assert await client.client_id() == own_id

    try:
        run_warmed(settings, prefix, scenario)
    finally:
        sync.delete(f"{prefix}:string")


def test_a_connection_goes_back_to_the_pool_even_when_closing_it_fails(settings, keys):
    _, prefix = keys

    async def scenario(client, hget):
        pool = client.connection_pool
        (conn,) = pool._available_connections
        closing = conn.disconnect

        async def failing_disconnect(*args, **kwargs):
            await closing(*args, **kwargs)
            raise RuntimeError("closing failed")

        conn.disconnect = failing_disconnect
        conn.mark_for_reconnect()  # the read succeeds, then its connection is closed on the way back
        with pytest.raises(RuntimeError, match="closing failed"):
            await hget(f"{prefix}:a", "state")
        assert pool._available_connections == [conn] and not pool._in_use_connections
        del conn.disconnect
        assert await hget(f"{prefix}:b", "state") == b"B"

    run_warmed(settings, prefix, scenario)


def test_a_connection_the_server_closed_is_connected_again(settings, keys):
    sync, prefix = keys

    async def scenario(client, hget):
        own_id = await client.client_id()
        assert sync.client_kill_filter(_id=own_id) == 1
        assert await hget(f"{prefix}:a", "state") == b"A"
        assert await client.client_id() != own_id

    run_warmed(settings, prefix, scenario)


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


def test_a_client_instrumented_on_its_class_keeps_redis_pys_path(settings, keys, monkeypatch):
    """``opentelemetry-instrument`` wraps the class's execute_command (functools.wraps-style)."""
    _, prefix = keys
    seen = []
    unwrapped = redis.asyncio.Redis.execute_command

    @functools.wraps(unwrapped)
    async def wrapped(self, *args, **options):
        seen.append(args[0])
        return await unwrapped(self, *args, **options)

    async def scenario(client):
        hget = pooled_hget(client)
        monkeypatch.setattr(redis.asyncio.Redis, "execute_command", wrapped)
        assert await hget(f"{prefix}:a", "state") == b"A"
        assert seen == ["HGET"]

    run_with_client(settings, scenario)


def test_a_blocking_pool_and_another_encoding_keep_redis_pys_path(settings, keys):
    """A BlockingConnectionPool's waiters are woken by redis-py's release; hiredis packs UTF-8 only."""
    sync, prefix = keys
    latin_key = f"{prefix}:caf\xe9"
    sync.hset(latin_key.encode("latin-1"), "state", "latin")

    async def scenario():
        blocking = redis_client(settings)  # the settings' TLS and login, on a blocking pool of one connection
        pool = blocking.connection_pool
        blocking.connection_pool = redis.asyncio.BlockingConnectionPool(
            connection_class=pool.connection_class, max_connections=1, timeout=5, **pool.connection_kwargs)
        await pool.aclose()
        latin = redis_client(settings)
        latin.connection_pool.connection_kwargs["encoding"] = "latin-1"  # before its first connection
        try:
            hget = pooled_hget(blocking)
            replies = await asyncio.wait_for(asyncio.gather(*(hget(f"{prefix}:b", "state") for _ in range(3))), 5)
            assert replies == [b"B"] * 3
            assert await pooled_hget(latin)(latin_key, "state") == b"latin"
        finally:
            await blocking.aclose()
            await latin.aclose()

    try:
        asyncio.run(scenario())
    finally:
        sync.delete(latin_key.encode("latin-1"))


def test_any_other_client_keeps_its_own_hget():
    class Other:
        async def hget(self, key, field):
            return "other", key, field

    class Single(redis.asyncio.Redis):
        async def hget(self, key, field):
            return "single", key, field

    assert asyncio.run(pooled_hget(Other())("k", "f")) == ("other", "k", "f")
    single = redis.asyncio.Redis(single_connection_client=True)
    single.hget = Single.hget.__get__(single)
    assert asyncio.run(pooled_hget(single)("k", "f")) == ("single", "k", "f")


async def until(condition) -> None:
    """``condition`` (a function, or a coroutine function) holds, within 5 s."""
    async def holds():
        result = condition()
        return await result if asyncio.iscoroutine(result) else result

    async with asyncio.timeout(5):
        while not await holds():  # noqa: ASYNC110 - a pool's lists and a socket's buffer, not an event
            await asyncio.sleep(0.005)
