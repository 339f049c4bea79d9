"""The read API's view reader against the real Redis: a burst of requests that finds the cached
namespace pointer expired sends one GET of the pointer, not one per request.

The client is the real one with its GETs counted (the reads themselves go to Redis). The views live
in a namespace of the test's own, named by a pointer key of its own.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest

from app.adapters.redis.namespaces import RedisNamespaces
from app.adapters.redis.view_reader import ViewReader
from app.adapters.redis.view_store import DEFAULT_NAMESPACE, RedisViewStore
from app.bootstrap import redis_client
from app.domain.state import MemberState, Plan
from tools.stack.process import free_port

pytestmark = pytest.mark.stack

BURST = 50


class CountedGets:
    """A Redis client whose GETs are counted on their way to Redis."""

    def __init__(self, client):
        self.client = client
        self.gets = 0
        self.answered = 0

    async def get(self, key):
        self.gets += 1
        value = await self.client.get(key)
        self.answered += 1
        return value

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_burst_that_finds_the_pointer_expired_reads_it_once(settings):
    first, second = (f"t{uuid.uuid4().hex[:8]}" for _ in range(2))
    pointer = f"test:pointer:{first}"
    member = "m-" + uuid.uuid4().hex[:6]

    async def body():
        client = redis_client(settings)
        try:
            for namespace, seq in ((first, 1), (second, 2)):
                await RedisViewStore(client, namespace).write_many(
                    [MemberState(member_id=member, seq=seq, plan=Plan("basic", 2, 3, None), clock=seq)])
            await client.set(pointer, first, ex=60)
            counted = CountedGets(client)
            reader = ViewReader(counted, pointer_key=pointer, namespace_ttl=0.0)  # expired once read

            views = await asyncio.gather(*(reader.member(member) for _ in range(BURST)))
            assert [v.seq for v in views] == [1] * BURST
            assert counted.gets == 1

            await client.set(pointer, second, ex=60)  # a replay's switch: the next burst follows it
            views = await asyncio.gather(*(reader.member(member) for _ in range(BURST)))
            assert [v.seq for v in views] == [2] * BURST
            assert counted.gets == 2

            assert await reader.namespace(fresh=True) == second  # a fresh read is the caller's own
            assert counted.gets == 3
        finally:
            await client.delete(pointer)
            for namespace in (first, second):
                await RedisNamespaces(client).drop(namespace)
            await client.aclose()
    asyncio.run(body())


def test_a_failed_pointer_read_fails_every_waiting_request_and_the_next_burst_reads_again(settings):
    from redis.exceptions import ConnectionError as RedisConnectionError

    nobody = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})  # refuses

    async def body():
        down, up = CountedGets(redis_client(nobody, timeout_s=2)), CountedGets(redis_client(settings))
        try:
            reader = ViewReader(down, pointer_key=f"test:pointer:{uuid.uuid4().hex[:8]}", namespace_ttl=0.0)
            results = await asyncio.gather(*(reader.namespace() for _ in range(BURST)), return_exceptions=True)
            assert all(isinstance(r, RedisConnectionError) for r in results), results[:3]
            assert down.gets == 1

            reader.client = up  # Redis answers again
            assert await reader.namespace() == DEFAULT_NAMESPACE  # no pointer key: the default
            assert up.gets == 1
        finally:
            await down.aclose()
            await up.aclose()
    asyncio.run(body())


async def until(condition) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the condition is a counter, not an event
            await asyncio.sleep(0.001)


def test_a_read_whose_callers_all_went_away_is_not_served_to_the_next(settings):
    pointer = f"test:pointer:{uuid.uuid4().hex[:8]}"

    async def body():
        client = redis_client(settings)
        try:
            await client.set(pointer, "before", ex=60)
            counted = CountedGets(client)
            reader = ViewReader(counted, pointer_key=pointer, namespace_ttl=0.0)
            gone = asyncio.ensure_future(reader.namespace())
            await until(lambda: counted.gets == 1)  # the read is on its way to Redis
            gone.cancel()
            await until(lambda: counted.answered == 1)  # and Redis answered it, with nobody left waiting
            await client.set(pointer, "after", ex=60)
            assert await reader.namespace() == "after"
            assert counted.gets == 2
        finally:
            await client.delete(pointer)
            await client.aclose()
    asyncio.run(body())
