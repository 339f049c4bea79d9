"""Redis commands written without a Task each: for the read API, whose every request sends one HGET.

redis-py bounds each write with ``asyncio.wait_for(..., socket_timeout)``, which wraps the write in a
new Task that runs on the next turn of the event loop: about a tenth of the read API's CPU per request
(232 -> 209 µs, measured in-process). A command written to a transport with nothing left in its buffer
does not wait (``drain`` waits only above the buffer's high-water mark, 64 KiB, far above an HGET), so
it cannot time out: it is handed to the transport at once. Any other write (not connected yet, a
health check configured, bytes still buffered, a closing transport) goes through redis-py unchanged,
and so do the reads and their timeout. A cluster client keeps redis-py's connections. A connection
lost under a prompt write is reported by the read that follows, as the same ``ConnectionError``,
which the client's retry handles as before. ``_writer`` is redis-py's (pinned in pyproject.toml);
tests/unit/test_prompt_writes.py fails if an upgrade changes what this relies on.
"""
from __future__ import annotations

from typing import Any


class PromptWrites:
    """A mixin in front of a redis-py asyncio connection class."""

    _writer: Any

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if type(command) is list and not self.health_check_interval and self.is_connected:  # type: ignore[attr-defined]
            transport = self._writer.transport
            if not transport.is_closing() and transport.get_write_buffer_size() == 0:
                self._writer.writelines(command)
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
