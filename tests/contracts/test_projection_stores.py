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
from tests.contracts.conftest import CLUSTER, REAL, redis_space_for

REDIS_KINDS = [pytest.param("redis", marks=REAL), pytest.param("redis-cluster", marks=CLUSTER)]


def state(member: str, seq: int, plan_id: str = "basic") -> MemberState:
    return MemberState(member_id=member, seq=seq, plan=Plan(plan_id, 2, 3, None), clock=1_000 * seq)


# --- ViewStore -----------------------------------------------------------------------------


@pytest.fixture(params=["memory", *REDIS_KINDS])
def views(request):
    """A factory of (store, cleanup) built inside the test's event loop."""
    if request.param == "memory":
        store = InMemoryViewStore()
        return lambda: (store, None)
    space = redis_space_for(request)
    from app.adapters.redis.view_store import RedisViewStore

    def make():
        client = space.client()
        return RedisViewStore(client, space.prefix), client.aclose
    return make


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


def test_view_writes_of_members_in_every_slot_group(views):
    """Members spread over the 256 groups (so over every master of a cluster) in one batch."""
    members = [f"m{i}-{uuid.uuid4().hex[:6]}" for i in range(600)]

    async def body(store):
        assert await store.write_many([state(m, 3) for m in members]) == len(members)
        assert await store.write_many([state(m, 2 if i % 2 else 4) for i, m in enumerate(members)]) == 300
        got = await store.read_many(members)
        assert {m: s.seq for m, s in got.items()} == {m: 3 if i % 2 else 4 for i, m in enumerate(members)}
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


@pytest.fixture(params=["memory", *REDIS_KINDS])
def pointer(request):
    if request.param == "memory":
        p = InMemoryNamespacePointer()
        return lambda: (p, None)
    space = redis_space_for(request)
    from app.adapters.redis.namespaces import RedisNamespacePointer

    def make():
        client = space.client()
        return RedisNamespacePointer(client), client.aclose
    return make


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


@pytest.fixture(params=["memory", *REDIS_KINDS])
def member_clocks(request):
    if request.param == "memory":
        clocks = InMemoryMemberClocks()
        return lambda: (clocks, None)
    space = redis_space_for(request)
    from app.adapters.redis.member_clocks import RedisMemberClocks

    def make():
        client = space.client()
        return RedisMemberClocks(client), client.aclose
    return make


def test_member_clocks_only_move_forward(member_clocks):
    a, b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    many = {f"m{i}-{uuid.uuid4().hex[:6]}": i + 1 for i in range(300)}  # keys in many slots (a cluster: every master)

    async def body(clocks):
        await clocks.advance({a: 100, b: 7})
        await clocks.advance({a: 50, b: 9})
        await clocks.advance({})
        assert await clocks.read_many([a, b, "nobody"]) == {a: 100, b: 9}
        assert await clocks.read_many([]) == {}
        await clocks.advance(many)
        await clocks.advance({m: c - 1 for m, c in many.items()})
        assert await clocks.read_many(list(many)) == many
    asyncio.run(_with(member_clocks, body))


# --- the Redis layout as a whole: namespaces, members, the API reader -------------------------


@pytest.fixture(params=REDIS_KINDS)
def redis_kind(request):
    return redis_space_for(request)


def test_namespaces_members_and_drop_cover_every_master(redis_kind):
    """What the replay and verify need of a namespace (RedisNamespaces), and the API reader's
    member and count, over members in every slot group; the namespaces are this test's own."""
    from app.adapters.redis.namespaces import RedisNamespaces
    from app.adapters.redis.view_reader import ViewReader
    from app.adapters.redis.view_store import RedisViewStore, member_group

    space = redis_kind
    ns, other = space.prefix, space.prefix + "x"
    members = [f"m{i}-{uuid.uuid4().hex[:6]}" for i in range(500)]

    async def body():
        client = space.client()
        try:
            stores = RedisNamespaces(client)
            stores.check(ns)
            for bad in ("", "a:b", "a{b}"):
                with pytest.raises(ValueError):
                    stores.check(bad)
            assert not await stores.holds_data(ns)
            await RedisViewStore(client, ns).write_many([state(m, 2) for m in members])
            await RedisViewStore(client, other).write_many([state(members[0], 1)])
            assert {ns, other} <= await stores.namespaces()
            assert await stores.holds_data(ns)
            assert await stores.members(ns) == set(members)
            assert await stores.members(other) == {members[0]}

            await client.set("ledger:active-namespace", ns)
            reader = ViewReader(client)
            assert await reader.member_count() == (ns, len(members))
            assert (await reader.member(members[-1])).seq == 2
            assert await reader.member("nobody") is None

            assert await stores.drop(ns) == len(members) + len({member_group(m) for m in members})  # hashes, sets
            assert not await stores.holds_data(ns)
            assert ns not in await stores.namespaces() and other in await stores.namespaces()
            assert [k async for k in client.scan_iter(f"ledger:{ns}:*")] == []
            assert await stores.members(other) == {members[0]}
        finally:
            await client.aclose()
    asyncio.run(body())



def test_a_script_no_master_has_seen_is_loaded_and_run(redis_kind, monkeypatch):
    """NOSCRIPT (a new master, a replica just promoted): the script is loaded and the batch runs."""
    from app.adapters.redis import view_store
    from app.adapters.redis.commands import Script

    fresh = Script(view_store.FENCED_WRITE.source + f"-- {uuid.uuid4().hex}\n")
    monkeypatch.setattr(view_store, "FENCED_WRITE", fresh)
    members = [f"m{i}-{uuid.uuid4().hex[:6]}" for i in range(100)]

    async def body():
        client = redis_kind.client()
        try:
            store = view_store.RedisViewStore(client, redis_kind.prefix)
            assert await store.write_many([state(m, 1) for m in members]) == len(members)
            assert set(await store.read_many(members)) == set(members)
        finally:
            await client.aclose()
    asyncio.run(body())
