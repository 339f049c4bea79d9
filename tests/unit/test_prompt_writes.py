"""prompt_writes puts PromptWrites in front of whichever connection class the URL chose; a cluster
client is left as it is."""
from __future__ import annotations

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
