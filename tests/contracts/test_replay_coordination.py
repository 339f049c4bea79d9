"""What a replay keeps next to the namespace pointer (ReplayRecords: the unfinished replay) and what
the projectors tell it (ProjectorAcks: the namespace each live one writes): the in-memory twins
behave as the Redis adapters do."""
from __future__ import annotations

import asyncio
import time

import pytest

from app.adapters.memory.projections import InMemoryProjectorAcks, InMemoryReplayRecords
from app.service.ports import CATCH_UP, DROP_OLD, ReplayRecord
from tests.contracts.conftest import CLUSTER, REAL, redis_space_for

REDIS_KINDS = [pytest.param("redis", marks=REAL), pytest.param("redis-cluster", marks=CLUSTER)]


def _factory(request, memory, redis_class: str):
    """A factory of (store, close) built inside the test's event loop."""
    if request.param == "memory":
        return lambda: (memory, None)
    space = redis_space_for(request)

    def make():
        import importlib

        module, name = redis_class.rsplit(".", 1)
        client = space.client()
        return getattr(importlib.import_module(module), name)(client), client.aclose
    return make


async def _with(factory, body):
    store, close = factory()
    try:
        return await body(store)
    finally:
        if close is not None:
            await close()


@pytest.fixture(params=["memory", *REDIS_KINDS])
def records(request):
    return _factory(request, InMemoryReplayRecords(), "app.adapters.redis.replay_records.RedisReplayRecords")


@pytest.fixture(params=["memory", *REDIS_KINDS])
def acks(request):
    return _factory(request, InMemoryProjectorAcks(), "app.adapters.redis.projector_acks.RedisProjectorAcks")


def test_the_replay_record_is_kept_until_cleared(records):
    record = ReplayRecord(old_ns="v1", new_ns="v2", topic="downloads.ledger", end={0: 5, 11: 7, 3: 0},
                          phase=CATCH_UP)

    async def body(store):
        assert await store.load() is None
        await store.save(record)
        assert await store.load() == record
        dropping = ReplayRecord(record.old_ns, record.new_ns, record.topic, record.end, DROP_OLD)
        await store.save(dropping)
        assert await store.load() == dropping
        await store.clear()
        assert await store.load() is None
        await store.clear()  # clearing nothing is fine
    asyncio.run(_with(records, body))


def test_acknowledgements_name_each_live_projector_and_expire(acks):
    async def body(store):
        assert await store.live() == {}
        await store.acknowledge("w1", "v1", ttl_s=30)
        await store.acknowledge("w2", "v1", ttl_s=30)
        await store.acknowledge("w2", "v2", ttl_s=30)  # w2 followed the pointer
        await store.acknowledge("short", "v1", ttl_s=2.0)  # outlives a slow fsync before live()
        assert await store.live() == {"w1": "v1", "w2": "v2", "short": "v1"}
        deadline = time.monotonic() + 10
        while "short" in await store.live():  # a projector that stops acknowledging stops being live
            assert time.monotonic() < deadline, "the acknowledgement did not expire"
            await asyncio.sleep(0.05)
        assert await store.live() == {"w1": "v1", "w2": "v2"}
        await store.acknowledge("short", "v2", ttl_s=30)  # back again
        assert (await store.live())["short"] == "v2"
    asyncio.run(_with(acks, body))
