"""prompt_writes puts PromptWrites in front of whichever connection class the URL chose; a cluster
client is left as it is."""
from __future__ import annotations

import asyncio

import redis.asyncio
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

from app.adapters.redis.prompt_writes import PromptWrites, prompt_writes


def test_each_connection_class_keeps_its_own_behaviour_behind_prompt_writes():
    for url, base in [("redis://127.0.0.1:1/0", Connection), ("rediss://127.0.0.1:1/0", SSLConnection),
                      ("unix:///tmp/none.sock", UnixDomainSocketConnection)]:
        client = prompt_writes(redis.asyncio.Redis.from_url(url))
        cls = client.connection_pool.connection_class
        assert issubclass(cls, PromptWrites) and issubclass(cls, base), url
        assert prompt_writes(client).connection_pool.connection_class is cls  # applied once


def test_a_client_without_a_pool_is_left_as_it_is():
    class Cluster:
        pass

    cluster = Cluster()
    assert prompt_writes(cluster) is cluster


# --- the write path, against a local stand-in server ----------------------------------------------


class Recording(Connection):
    """redis-py's plain connection, counting the writes that go through redis-py's own path."""

    through_redis_py = 0

    async def send_packed_command(self, command, check_health=True):
        Recording.through_redis_py += 1
        await super().send_packed_command(command, check_health)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each RESP command: HGET with the bulk string ``v``, anything else (the client's
    CLIENT SETINFO on connect) with +OK."""
    while True:
        header = await reader.readline()
        if not header:
            return
        args = []
        for _ in range(int(header[1:])):
            size = int((await reader.readline())[1:])
            args.append((await reader.readexactly(size + 2))[:-2])
        writer.write(b"$1\r\nv\r\n" if args[0].upper() == b"HGET" else b"+OK\r\n")
        await writer.drain()


def _writes(**options) -> tuple[list[bytes], int, int]:
    """Three HGETs on one client (the second with the transport made to look busy), their replies,
    and how many writes went through redis-py's own path for the first HGET and for the other two."""

    async def scenario():
        server = await asyncio.start_server(_serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = redis.asyncio.Redis(host="127.0.0.1", port=port, socket_timeout=2, **options)
        client.connection_pool.connection_class = Recording
        prompt_writes(client)
        try:
            Recording.through_redis_py = 0
            replies = [await client.hget("k", "f")]
            first = Recording.through_redis_py
            connection = await client.connection_pool.get_connection()
            transport = connection._writer.transport
            await client.connection_pool.release(connection)
            transport.get_write_buffer_size = lambda: 1  # bytes still buffered
            replies.append(await client.hget("k", "f"))
            del transport.get_write_buffer_size
            replies.append(await client.hget("k", "f"))
            return replies, first, Recording.through_redis_py - first
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    return asyncio.run(scenario())


def test_a_command_to_an_idle_connection_is_written_at_once_and_a_busy_one_through_redis_py():
    replies, first, rest = _writes()
    assert replies == [b"v"] * 3
    # Every command to an idle connection is written at once (the connect's own commands too); of the
    # next two, only the one behind buffered bytes takes redis-py's path.
    assert first == 0 and rest == 1, (first, rest)


def test_with_health_checks_every_command_goes_through_redis_py():
    replies, first, rest = _writes(health_check_interval=30)
    assert replies == [b"v"] * 3
    assert rest == 2 and first >= 1
