"""One HGET on a pooled connection without redis-py's per-command bookkeeping: for the read API, whose
every busy request sends one.

redis-py 8's ``execute_command`` takes the pool's lock twice, awaits five observability recorders (which
look up their provider each time, enabled or not), dispatches a release event and builds a retry closure
for every command: about a third of an HGET's CPU (measured in BENCHMARKS.md). ``pooled_hget(client)``
does for one HGET what redis-py does, and nothing else:

- a connection from the pool's idle list, or from ``get_connection`` when none is idle (which keeps the
  pool's limit); one that the server closed or that holds unread bytes is disconnected first, as
  redis-py's ``ensure_connection`` does, and the send connects it again;
- the command written and its reply read by the connection itself, under the connection's own retry
  object: a failed attempt disconnects the connection, and the retry reconnects it (the read API's
  client retries once, at once, for a stale pooled connection);
- a command that fails or is cancelled anywhere disconnects its connection before the connection goes
  back (redis-py's read does so itself; this covers the rest), so no reply is ever left on a pooled
  connection for the next command to read as its own.

A cluster client, a single-connection client, a client on a blocking pool or with an encoding other
than UTF-8, anything else that is not a plain pooled ``redis.asyncio.Redis``, and a client whose
``execute_command`` is wrapped (OpenTelemetry's redis instrumentation, on the instance when the API is
traced, on the class under ``opentelemetry-instrument``) keep redis-py's ``hget``. An error reply
(``ResponseError``) is a whole reply: its connection goes back as it is, as in redis-py. ``_available_connections`` and ``_in_use_connections``
are redis-py's (pinned in pyproject.toml); tests/integration/test_pooled_hget.py fails if an upgrade
changes them.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import hiredis
import redis.asyncio
import redis.exceptions

pack_command = hiredis.pack_command
Hget = Callable[[str, str], Awaitable[Any]]


def pooled_hget(client: Any) -> Hget:
    """The client's HGET: the lean one for a plain pooled ``redis.asyncio.Redis``, its own otherwise."""
    if not _plain(client):
        async def own_hget(key: str, field: str) -> Any:
            return await client.hget(key, field)  # looked up at each call, as a caller of client.hget would

        return own_hget
    pool = client.connection_pool
    instance_attributes = vars(client)

    async def hget(key: str, field: str) -> Any:
        if "execute_command" in instance_attributes or hasattr(type(client).execute_command, "__wrapped__"):
            return await client.hget(key, field)  # instrumented since (tracing): its spans need redis-py's path
        idle = pool._available_connections
        if idle:
            conn = idle.pop()
            pool._in_use_connections.add(conn)
        else:
            conn = await pool.get_connection()
        clean = False
        try:
            if conn.is_connected:
                try:
                    if await conn.can_read():
                        await conn.disconnect()
                except redis.exceptions.ConnectionError:
                    pass  # closed by the server: can_read disconnected it, and the send connects again

            async def once() -> Any:
                nonlocal clean
                await conn.send_packed_command([pack_command(("HGET", key, field))])
                try:
                    return await conn.read_response()
                except redis.exceptions.ResponseError:
                    clean = True  # an error reply is a whole reply: the connection is as good as before
                    raise

            async def failed(_error: Exception) -> None:
                await conn.disconnect()

            reply = await conn.retry.call_with_retry(once, failed)
            clean = True
            return reply
        finally:
            try:
                if not clean or conn.should_reconnect():
                    await conn.disconnect(nowait=True)  # closes at once: nothing to wait on, or cancel
            finally:
                pool._in_use_connections.discard(conn)
                pool._available_connections.append(conn)

    return hget


def _plain(client: Any) -> bool:
    """A pooled ``redis.asyncio.Redis`` whose pool hands connections out as this module does (not a
    BlockingConnectionPool, whose waiters a returned connection must wake) and whose commands are
    UTF-8 (hiredis packs strings as UTF-8)."""
    if type(client) is not redis.asyncio.Redis or client.single_connection_client:
        return False
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    return (type(pool) is redis.asyncio.ConnectionPool
            and kwargs.get("encoding", "utf-8").lower().replace("_", "-") in ("utf-8", "utf8")
            and kwargs.get("encoding_errors", "strict") == "strict")
