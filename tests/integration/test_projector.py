"""The projector against the real Redis and Cassandra: views equal the domain's, redelivery and lower
seqs change nothing, gaps are filled from the Cassandra event store, a restart continues from Redis.

Each test uses its own projection namespace (Redis keys ``ledger:{ns}:*`` and Cassandra tables
``rm_{ns}_member_summary``) in a test keyspace created by the migrations and dropped at the end.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest

from app.adapters.avro.mapping import AvroMessageCodec, encode_ledger_entry
from app.adapters.cassandra.event_store import CassandraEventStore
from app.adapters.cassandra.migrations import migrate
from app.adapters.cassandra.namespaces import CassandraNamespaces
from app.adapters.cassandra.read_models import CassandraReadModels, summary_table
from app.adapters.memory.projections import InMemoryNamespacePointer
from app.adapters.redis import view_store
from app.adapters.redis.namespaces import RedisNamespaces
from app.adapters.redis.view_store import RedisViewStore, member_key, members_key
from app.adapters.view_json import encode_view
from app.bootstrap import redis_client
from app.config import REPO_ROOT
from app.domain import MemberState, evolve, views
from app.domain.history import Source
from app.domain.state_json import state_to_dict
from app.service.ports import InputMessage
from app.service.projector import Projector
from tests.support.domain_builders import DAY, T0, acquire, deactivate, event, plan, release, renew
from tests.support.histories import decided

LEDGER = "downloads.ledger"
AT = (T0 + 2 * DAY, T0 + 20 * DAY, T0 + 45 * DAY, T0 + 400 * DAY)  # times the views are compared at


@pytest.fixture(scope="module")
def keyspace(cassandra):
    name = f"test_projector_{uuid.uuid4().hex[:8]}"
    migrate(cassandra, REPO_ROOT / "deploy" / "cql", "local", name, echo=lambda _: None)
    yield name
    cassandra.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=120)


@pytest.fixture
def ns(cassandra, keyspace, settings):
    """A fresh projection namespace: Cassandra tables created, Redis keys removed afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    asyncio.run(CassandraNamespaces(cassandra, keyspace).create(name))
    yield name

    async def clean():
        client = redis_client(settings)
        keys = [k async for k in client.scan_iter(f"ledger:{name}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    asyncio.run(clean())


class Env:
    """What one scenario needs, built inside its event loop (redis.asyncio clients bind to a loop)."""

    def __init__(self, settings, session, keyspace, ns):
        self.redis = redis_client(settings)
        self.session, self.keyspace, self.ns = session, keyspace, ns
        self.views = RedisViewStore(self.redis, ns)
        self.models = CassandraReadModels(session, keyspace, ns)
        self.event_store = CassandraEventStore(session, keyspace)

    def projector(self, cache_size=1000) -> Projector:
        return Projector(self.event_store, AvroMessageCodec(), lambda n: RedisViewStore(self.redis, n),
                         lambda n: CassandraReadModels(self.session, self.keyspace, n),
                         InMemoryNamespacePointer(self.ns), cache_size)

    async def close(self):
        await self.redis.aclose()


def scenario(settings, cassandra, keyspace, ns, body):
    async def main():
        env = Env(settings, cassandra, keyspace, ns)
        try:
            await body(env)
        finally:
            await env.close()

    asyncio.run(main())


# --- ledger builders ----------------------------------------------------------------------


def history(member):
    """Real domain events folded through the decider: (ledger entries, stored decisions, final state)."""
    events = [
        event(plan(device_limit=2, downloads_per_device=3, monthly_limit=20), at=T0, member=member),
        event(acquire("l1", device="d1", title="t1", studio="s1", max_renewals=2), at=T0 + 1, member=member),
        event(acquire("l2", device="d2", title="t2", studio="s1", title_yearly_limit=3), at=T0 + 2, member=member),
        event(acquire("l3", device="d3", title="t3"), at=T0 + 3, member=member),  # DEVICE_LIMIT
        event(renew("l1", expires=T0 + 40 * DAY), at=T0 + DAY, member=member),
        event(release("l2", reason="EXPIRED"), at=T0 + 2 * DAY, member=member),
        event(acquire("l4", device="d2", title="t1", expires=T0 + 10 * DAY), at=T0 + 3 * DAY, member=member),
        event(acquire("l5", device="d2", title="t2", studio="s2"), at=T0 + 4 * DAY, member=member),
        event(deactivate("d1"), at=T0 + 5 * DAY, member=member),
        event(acquire("l6", device="d1", title="t1", expires=T0 + 400 * DAY), at=T0 + 6 * DAY, member=member),
        event(renew("l6", expires=T0 + 500 * DAY), at=T0 + 370 * DAY, member=member),  # next year
        event(plan(device_limit=1, downloads_per_device=1, monthly_limit=None, plan_id="basic"),
              at=T0 + 371 * DAY, member=member),
    ]
    recorded, decisions, state = decided(events, member)
    assert len(recorded) == 11
    return recorded, decisions, state


def messages(recorded, partition=0):
    return [InputMessage(LEDGER, partition, r.seq, r.event.member_id.encode(),
                         encode_ledger_entry(r, Source("downloads.events", partition, r.seq))) for r in recorded]


def state_at(recorded, seq):
    state = MemberState.empty(recorded[0].event.member_id)
    for r in recorded[:seq]:
        state = evolve(state, r)
    return state


def domain_views(state):
    titles = sorted({lic.title_id for lic in state.licenses.values()})
    return {
        "summary": [views.summary(state, at) for at in AT],
        "licenses": [views.licenses(state, at) for at in AT],
        "title_year": {(t, y): views.title_year_count(state, t, y) for t in titles for y in (2024, 2025)},
        "digest": views.digest(state),
    }


async def assert_projected(env, final):
    member = final.member_id
    in_redis = await env.views.read(member)
    assert in_redis is not None
    assert state_to_dict(in_redis, include_processed=False) == state_to_dict(final, include_processed=False)
    assert domain_views(in_redis) == domain_views(final)
    assert int(await env.redis.hget(member_key(env.ns, member), "seq")) == final.seq
    assert await env.redis.sismember(members_key(env.ns, member), member)

    in_cassandra = (await env.models.read_states([member]))[member]
    assert state_to_dict(in_cassandra, include_processed=False) == state_to_dict(final, include_processed=False)
    assert domain_views(in_cassandra) == domain_views(final)
    row = env.session.execute(f"SELECT seq, plan_id, clock, writetime(state) AS written FROM {env.keyspace}."
                              f"{summary_table(env.ns)} WHERE member_id = %s", (member,)).one()
    assert (row.seq, row.plan_id, row.clock, row.written) == (final.seq, final.plan.plan_id, final.clock, final.seq)


# --- tests --------------------------------------------------------------------------------


def test_projected_views_equal_the_domain_views_of_the_final_state(settings, cassandra, keyspace, ns):
    a, _, final_a = history("ma")
    b, _, final_b = history("mb")

    async def body(env):
        projector = env.projector()
        results = [await projector.process(batch) for batch in (
            messages(a[:4], partition=0) + messages(b[:7], partition=1),
            messages(a[4:9], partition=0) + messages(b[7:], partition=1),
            messages(a[9:], partition=0),
        )]
        assert [(r.applied, r.members_written) for r in results] == [(11, 2), (9, 2), (2, 1)]
        await assert_projected(env, final_a)
        await assert_projected(env, final_b)

    scenario(settings, cassandra, keyspace, ns, body)


def test_the_same_batch_twice_changes_nothing_and_lower_seqs_are_refused(settings, cassandra, keyspace, ns):
    recorded, _, final = history("m1")
    summary = summary_table(ns)

    def cassandra_rows():
        return sorted(tuple(r) for r in cassandra.execute(
            f"SELECT seq, state, writetime(state) FROM {keyspace}.{summary} WHERE member_id = %s", ("m1",)))

    async def body(env):
        projector = env.projector()
        batch = messages(recorded)
        await projector.process(batch)
        redis_before, cassandra_before = await env.redis.hgetall(member_key(ns, "m1")), cassandra_rows()
        assert cassandra_before[0][0] == 11 and cassandra_before[0][2] == 11  # fenced: write timestamp = seq

        again = await projector.process(batch)
        assert (again.applied, again.duplicates, again.members_written) == (0, 11, 0)
        restarted = await env.projector().process(batch)
        assert (restarted.applied, restarted.duplicates, restarted.members_written) == (0, 11, 0)
        assert await env.redis.hgetall(member_key(ns, "m1")) == redis_before
        assert cassandra_rows() == cassandra_before

        # A lower seq written directly is refused by both fences.
        older = state_at(recorded, 3)
        assert await env.views.write_many([older]) == 0
        await env.models.write_many([older])  # at timestamp 3: loses to the row at timestamp 11
        assert await env.redis.hgetall(member_key(ns, "m1")) == redis_before
        assert cassandra_rows() == cassandra_before
        await assert_projected(env, final)

    scenario(settings, cassandra, keyspace, ns, body)


def test_a_gap_is_filled_from_the_cassandra_event_store(settings, cassandra, keyspace, ns):
    member = f"gap-{uuid.uuid4().hex[:8]}"
    recorded, decisions, final = history(member)

    async def body(env):
        assert await env.event_store.append({member: decisions}, {member: (0, 0)}) == []
        projector = env.projector()
        await projector.process(messages(recorded[:2]))
        result = await projector.process(messages(recorded[6:7]))  # seq 7 right after seq 2
        assert (result.applied, result.gaps_filled, result.gap_entries) == (1, 1, 4)
        await assert_projected(env, state_at(recorded, 7))
        fresh = await env.projector().process(messages(recorded[-1:]))  # from Redis at 7, seq 11
        assert (fresh.applied, fresh.gaps_filled, fresh.gap_entries) == (1, 1, 3)
        await assert_projected(env, final)

    scenario(settings, cassandra, keyspace, ns, body)


def test_a_restarted_projector_with_an_empty_cache_continues_from_redis(settings, cassandra, keyspace, ns):
    recorded, _, final = history("m1")  # nothing in the event store: a gap fill would fail

    async def body(env):
        await env.projector().process(messages(recorded[:6]))
        restarted = env.projector()
        assert restarted.cached_members == 0
        result = await restarted.process(messages(recorded[4:]))
        assert (result.applied, result.duplicates, result.gaps_filled) == (5, 2, 0)
        await assert_projected(env, final)

    scenario(settings, cassandra, keyspace, ns, body)


def test_cassandra_behind_redis_is_repaired_by_a_redelivery_of_duplicates(settings, cassandra, keyspace, ns):
    # As after a crash between the Redis and the Cassandra write of a batch.
    recorded, _, final = history("m1")

    async def body(env):
        await env.projector().process(messages(recorded[:3]))
        assert await env.views.write_many([final]) == 1  # Redis got the batch, Cassandra did not
        result = await env.projector().process(messages(recorded[3:]))
        assert (result.applied, result.duplicates, result.members_written) == (0, 8, 1)
        await assert_projected(env, final)

    scenario(settings, cassandra, keyspace, ns, body)


def test_view_store_write_many_runs_the_fenced_script_in_a_pipeline(settings, cassandra, keyspace, ns, monkeypatch):
    # A script text the server has never seen: the first EVALSHA answers NOSCRIPT, the script is loaded
    # and the pipeline runs again.
    monkeypatch.setattr(view_store, "FENCED_WRITE",
                        view_store.Script(view_store.FENCED_WRITE.source + f"-- {uuid.uuid4().hex}\n"))
    recorded, _, final = history("m1")
    other = state_at(history("m2")[0], 2)

    async def body(env):
        store = RedisViewStore(env.redis, ns)
        assert await env.redis.script_exists(view_store.FENCED_WRITE.sha) == [False]
        assert await store.write_many([state_at(recorded, 5), other]) == 2
        assert await store.write_many([final, state_at(recorded, 4), other]) == 1
        assert (await store.read("m1")).seq == final.seq
        got = await store.read_many(["m1", "m2", "nobody"])
        assert {m: s.seq for m, s in got.items()} == {"m1": 11, "m2": 2}
        assert await env.redis.hget(member_key(ns, "m1"), "state") == encode_view(final).encode()
        assert await env.redis.sismember(members_key(ns, "m1"), "m1")
        assert await env.redis.sismember(members_key(ns, "m2"), "m2")
        assert await RedisNamespaces(env.redis).members(ns) == {"m1", "m2"}
        assert await store.write_many([]) == 0

    scenario(settings, cassandra, keyspace, ns, body)


def test_the_migration_creates_the_v1_table_the_namespace_store_creates(cassandra, keyspace, ns):
    def columns(namespace):
        rows = cassandra.execute(
            "SELECT column_name, kind, position, type FROM system_schema.columns "
            "WHERE keyspace_name = %s AND table_name = %s", (keyspace, summary_table(namespace)))
        return sorted(tuple(r) for r in rows)

    assert columns("v1") == columns(ns)
    assert columns("v1")
    asyncio.run(CassandraNamespaces(cassandra, keyspace).create(ns))  # idempotent
    with pytest.raises(ValueError):
        summary_table("Bad-Namespace")
