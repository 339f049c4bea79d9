"""PromptWrites against the real Redis: commands round-trip, and a pooled connection the server closed
is retried by the read API's client as before (the lost connection shows at the read)."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from app.bootstrap import api_reader, redis_sync_client

pytestmark = pytest.mark.stack


def test_prompt_writes_round_trip_and_survive_a_killed_connection(settings):
    key = f"test:prompt-writes:{uuid.uuid4().hex[:12]}"
    sync = redis_sync_client(settings)
    sync.hset(key, "state", "v")

    async def scenario():
        client = api_reader(settings).client
        try:
            assert await client.hget(key, "state") == b"v"
            own_id = await client.client_id()
            assert sync.client_kill_filter(_id=own_id) == 1
            assert await client.hget(key, "state") == b"v"  # the one immediate retry reconnects
            assert await client.client_id() != own_id
            replies = await asyncio.gather(*(client.hget(key, "state") for _ in range(50)))
            assert replies == [b"v"] * 50
            assert client.connection_pool.connection_class.__name__.startswith("Prompt")
        finally:
            await client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        sync.delete(key)
        sync.close()
