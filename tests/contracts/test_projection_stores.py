"""The projection ports (ViewStore, ReadModels, NamespacePointer) and the ProgressStore: the
in-memory twins used by the unit tests behave as the Redis and Cassandra adapters do."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from app.adapters.memory.event_store import InMemoryProgressStore
from app.adapters.memory.projections import (
    InMemoryMemberClocks,
    InMemoryNamespacePointer,
    InMemoryReadModels,
    InMemoryViewStore,
)
from app.domain.state import MemberState, Plan
from app.service.ports import SwitchRefused
from tests.contracts.conftest import REAL


def state(member: str, seq: int, plan_id: str = "basic") -> MemberState:
    return MemberState(member_id=member, seq=seq, plan=Plan(plan_id, 2, 3, None), clock=1_000 * seq)


# --- ViewStore -----------------------------------------------------------------------------


MEMORY_OR_REDIS = ["memory", pytest.param("redis", marks=REAL)]


def memory_or_redis(request, memory, on_redis):
    """A factory of (store, cleanup) built inside the test's event loop: the in-memory twin, or
    ``on_redis(client, space)`` on a Redis DB leased to the test."""
    if request.param == "memory":
        store = memory()
        return lambda: (store, None)
    space = request.getfixturevalue("redis_space")

    def make():
        client = space.client()
        return on_redis(client, space), client.aclose
    return make


@pytest.fixture(params=MEMORY_OR_REDIS)
def views(request):
    from app.adapters.redis.view_store import RedisViewStore

    return memory_or_redis(request, InMemoryViewStore, lambda client, space: RedisViewStore(client, space.prefix))


async def _with(factory, body):
    store, close = factory()
    try:
        return await body(store)
    finally:
        if close is not None:
            await close()


def test_view_writes_move_forward_only(views):
    async def body(store):
        assert await store.write_many([state("a", 2), state("b", 1)]) == 2
        assert await store.write_many([state("a", 1, "old"), state("a", 2, "same-seq"), state("b", 3)]) == 1
        got = await store.read_many(["a", "b", "nobody"])
        assert {m: (s.seq, s.plan.plan_id) for m, s in got.items()} == {"a": (2, "basic"), "b": (3, "basic")}
        assert await store.write_many([]) == 0
        assert await store.read_many([]) == {}
    asyncio.run(_with(views, body))


def test_views_keep_the_whole_view_state(views):
    s = state("m", 4)

    async def body(store):
        await store.write_many([s])
        assert (await store.read_many(["m"]))["m"] == s
    asyncio.run(_with(views, body))


# --- ReadModels ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("cassandra", marks=REAL)])
def read_models(request):
    if request.param == "memory":
        store = InMemoryReadModels()
        return lambda: (store, None)
    session = request.getfixturevalue("cassandra")
    keyspace = request.getfixturevalue("test_keyspace")
    from app.adapters.cassandra.namespaces import CassandraNamespaces
    from app.adapters.cassandra.read_models import CassandraReadModels

    ns = f"c{uuid.uuid4().hex[:8]}"
    asyncio.run(CassandraNamespaces(session, keyspace).create(ns))
    return lambda: (CassandraReadModels(session, keyspace, ns), None)


def test_read_model_writes_move_forward_only(read_models):
    async def body(store):
        assert await store.write_many([state("a", 2), state("b", 1), state("z", 0)]) == 2  # seq 0: no view
        await store.write_many([state("a", 1, "old"), state("b", 3)])
        got = await store.read_states(["a", "b", "z", "nobody"])
        assert {m: (s.seq, s.plan.plan_id) for m, s in got.items()} == {"a": (2, "basic"), "b": (3, "basic")}
        assert got["b"] == state("b", 3)
    asyncio.run(_with(read_models, body))


# --- NamespacePointer ----------------------------------------------------------------------


@pytest.fixture(params=MEMORY_OR_REDIS)
def pointer(request):
    from app.adapters.redis.namespaces import RedisNamespacePointer

    return memory_or_redis(request, InMemoryNamespacePointer, lambda client, _: RedisNamespacePointer(client))


def test_the_pointer_starts_at_v1_and_switches_only_from_the_expected_namespace(pointer):
    async def body(p):
        assert await p.active() == "v1"
        await p.switch("v1", "v2")
        assert await p.active() == "v2"
        with pytest.raises(SwitchRefused) as refused:
            await p.switch("v1", "v3")
        assert (refused.value.expected, refused.value.actual) == ("v1", "v2")
        assert await p.active() == "v2"
    asyncio.run(_with(pointer, body))


# --- ProgressStore -------------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("cassandra", marks=REAL)])
def progress(request):
    if request.param == "memory":
        return InMemoryProgressStore()
    from app.adapters.cassandra.progress_store import CassandraProgressStore

    return CassandraProgressStore(request.getfixturevalue("cassandra"), request.getfixturevalue("test_keyspace"))


def test_progress_is_saved_per_topic_and_partition(progress):
    topic = f"t-{uuid.uuid4().hex[:8]}"

    async def body():
        assert await progress.load(topic) == {}
        await progress.save(topic, {0: 5, 1: 7})
        await progress.save(topic, {1: 9})
        assert await progress.load(topic) == {0: 5, 1: 9}
        assert await progress.load(topic + "-other") == {}
    asyncio.run(body())


# --- MemberClocks --------------------------------------------------------------------------


@pytest.fixture(params=MEMORY_OR_REDIS)
def member_clocks(request):
    from app.adapters.redis.member_clocks import RedisMemberClocks

    return memory_or_redis(request, InMemoryMemberClocks, lambda client, _: RedisMemberClocks(client))


def test_member_clocks_only_move_forward(member_clocks):
    a, b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"

    async def body(clocks):
        await clocks.advance({a: 100, b: 7})
        await clocks.advance({a: 50, b: 9})
        await clocks.advance({})
        assert await clocks.read_many([a, b, "nobody"]) == {a: 100, b: 9}
        assert await clocks.read_many([]) == {}
    asyncio.run(_with(member_clocks, body))
