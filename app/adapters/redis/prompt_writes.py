"""Redis commands written without a Task each: for the read API, whose every request sends one HGET.

redis-py bounds each write with ``asyncio.wait_for(..., socket_timeout)``, which wraps the write in a
new Task that runs on the next turn of the event loop: about a fifth of the read API's CPU per request
(BENCHMARKS.md). A write to a transport with nothing left in its buffer cannot wait (``drain`` only waits
above the buffer's high-water mark), so it cannot time out: it is handed to the transport at once.
Any other write (not connected yet, a health check configured, bytes still buffered) goes through redis-py
unchanged, and so do the reads and their timeout. A cluster client keeps redis-py's connections. A connection lost under a prompt write is reported
by the read that follows, as the same ``ConnectionError``, which the client's retry handles as before.
"""
from __future__ import annotations

from typing import Any


class PromptWrites:
    """A mixin in front of a redis-py asyncio connection class."""

    _writer: Any

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        writer = self._writer
        if (writer is not None and type(command) is list and not self.health_check_interval  # type: ignore[attr-defined]
                and self.is_connected):  # type: ignore[attr-defined]
            transport = writer.transport
            if not transport.is_closing() and transport.get_write_buffer_size() == 0:
                writer.writelines(command)
                return
        await super().send_packed_command(command, check_health)  # type: ignore[misc]


def prompt_writes(client: Any) -> Any:
    """``client``, a ``redis.asyncio.Redis`` whose pool has made no connection yet, with its pool's
    connection class (plain, TLS or Unix socket, as the URL chose) behind PromptWrites."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:  # a cluster client
        return client
    base = pool.connection_class
    if not issubclass(base, PromptWrites):
        pool.connection_class = type(f"Prompt{base.__name__}", (PromptWrites, base), {})
    return client
