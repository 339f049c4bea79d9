"""The replay and the verification end to end: a worker running against the real stack, the
pipeline's own topics, Redis database and (here) a keyspace of each test's own, so that "every
member of the event store" is exactly this test's members.

The replay is driven through `app.service.replay.Replay` step by step where a test needs to act
between steps (publish while it runs), and through `ledger replay` / `ledger verify` as
subprocesses with the pipeline's environment to check the commands and their exit codes."""
from __future__ import annotations

import asyncio
import json
import random
import time
import uuid

import httpx
import pytest

from app.adapters.cassandra.namespaces import CassandraNamespaces
from app.adapters.cassandra.read_models import CassandraReadModels, summary_table
from app.adapters.redis.view_store import (
    ACTIVE_NAMESPACE_KEY,
    DEFAULT_NAMESPACE,
    all_members_keys,
    member_key,
    members_key,
)
from app.adapters.view_json import decode_view, encode_view
from app.bootstrap import Stores as RuntimeStores
from app.bootstrap import redis_client
from app.config import REPO_ROOT
from app.domain import views
from app.domain.state import MemberState
from app.domain.views import digest
from app.service.ports import LedgerReadError
from app.service.replay import ReplayError
from tests.support.domain_builders import DAY, HOUR, T0, acquire, event, plan, release, renew
from tests.support.helpers import ledger, wait_until
from tests.support.pipeline import expected_states, scripted_history
from tests.support.random_history import random_history

try:  # the read API (another part of the project); without it the answers are computed from the views
    from app.entrypoints.api.app import create_api
except ImportError:  # pragma: no cover - depends on the checkout
    create_api = None

AT = (T0 + 2 * DAY, T0 + 20 * DAY, T0 + 120 * DAY)  # times the API is asked at


@pytest.fixture
def test_keyspace(cassandra, settings):
    """A keyspace per test (overrides the session-wide one): verify and replay look at every member
    of the event store, which must be this test's members only."""
    from app.adapters.cassandra.migrations import migrate

    keyspace = f"test_replay_{uuid.uuid4().hex[:8]}"
    migrate(cassandra, REPO_ROOT / "deploy" / "cql", settings.environment, keyspace, echo=lambda *_: None)
    yield keyspace
    cassandra.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


# --- workloads ----------------------------------------------------------------------------


def workload(prefix: str):
    """The end-to-end workload: the scripted history (every rule) and a random history."""
    return scripted_history(prefix) + random_history(prefix, members=40, events=1500, seed=11)


def follow_up(prefix: str, tag: str, members: list[str], count: int, seed: int, start: int = T0 + 100 * DAY):
    """More events for existing members (and one new member), with event ids of their own."""
    rng = random.Random(seed)
    out = [event(plan(device_limit=3, downloads_per_device=5), at=start, member=f"{prefix}-{tag}-new",
                 event_id=f"{prefix}-{tag}-new-plan")]
    held: dict[str, list[str]] = {}
    for n in range(count):
        m = rng.choice(members)
        at = start + n * HOUR
        mine = held.setdefault(m, [])
        roll = rng.random()
        if roll < 0.6 or not mine:
            lid = f"{tag}-l{n}"
            mine.append(lid)
            payload = acquire(lid, device=f"d{rng.randint(1, 4)}", title=f"t{rng.randint(1, 8)}",
                              expires=at + rng.randint(HOUR, 30 * DAY))
        elif roll < 0.8:
            payload = renew(rng.choice(mine), expires=at + 40 * DAY)
        else:
            payload = release(rng.choice(mine))
        out.append(event(payload, at=at, member=m, event_id=f"{m}-{tag}-{n}"))
    return out


# --- reading the namespaces ---------------------------------------------------------------


def active(pipeline) -> str:
    raw = pipeline.redis().get(ACTIVE_NAMESPACE_KEY)
    return DEFAULT_NAMESPACE if raw is None else raw.decode()


def views_of(pipeline, ns: str) -> dict[str, MemberState]:
    client = pipeline.redis()
    members = sorted(m.decode() for key in all_members_keys(ns) for m in client.smembers(key))
    pipe = client.pipeline(transaction=False)
    for m in members:
        pipe.hget(member_key(ns, m), "state")
    return {m: decode_view(raw) for m, raw in zip(members, pipe.execute()) if raw is not None}


def digests(states) -> dict[str, str]:
    return {m: digest(s) for m, s in states.items() if s.seq > 0}


def read_models_of(pipeline, ns: str, member_ids) -> dict[str, str]:
    """Digest of each member's Cassandra summary state."""
    async def read():
        models = CassandraReadModels(pipeline.cassandra, pipeline.settings.cassandra_keyspace, ns)
        return {m: digest(s) for m, s in (await models.read_states(list(member_ids))).items()}
    return asyncio.run(read())


def wait_for_views_in(pipeline, ns: str, expected: dict[str, MemberState], timeout: float = 120.0) -> None:
    def caught_up():
        client = pipeline.redis()
        pipe = client.pipeline(transaction=False)
        for m in expected:
            pipe.hget(member_key(ns, m), "seq")
        return all(s is not None and int(s) >= expected[m].seq for m, s in zip(expected, pipe.execute()))
    wait_until(caught_up, timeout, interval=0.5, message=f"views in {ns} to reach the expected seq")


async def api_answers(settings, client, member_ids) -> dict:
    """What the read API answers for each member (or, without the API, the same views computed
    from the active namespace's Redis views with app.domain.views)."""
    answers = {}
    if create_api is None:
        from app.adapters.redis.namespaces import RedisNamespacePointer
        from app.adapters.redis.view_store import RedisViewStore
        ns = await RedisNamespacePointer(client).active()
        states = await RedisViewStore(client, ns).read_many(list(member_ids))
        for m in member_ids:
            state = states[m]
            answers[m] = [(views.summary(state, at), views.licenses(state, at)) for at in AT]
        return answers
    app = create_api(settings, namespace_ttl=0, now_ms=lambda: AT[0])  # reads the pipeline's Redis DB
    token = next(iter(settings.api_token_set))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.get("/readyz")
        assert response.status_code == 200, response.text
        answers["namespace"] = response.json()["namespace"]
        for m in member_ids:
            got = []
            for at in AT:
                for path in (f"/v1/members/{m}?at={at}", f"/v1/members/{m}/licenses?at={at}"):
                    response = await http.get(path)
                    assert response.status_code == 200, (path, response.text)
                    got.append(response.json())
            response = await http.get(f"/v1/members/{m}/titles/t1/downloads?year=2024")
            got.append(response.json())
            response = await http.post(f"/v1/members/{m}/eligibility", json={
                "license_id": "probe", "device_id": "d1", "title_id": "t1", "studio_id": "s1",
                "expires_at": T0 + 400 * DAY, "at": AT[1]})
            assert response.status_code == 200, response.text
            got.append(response.json())
            answers[m] = got
    reader_client = getattr(getattr(app.state, "reader", None), "client", None)
    if reader_client is not None:  # ASGITransport runs no lifespan: close the app's client here
        await reader_client.aclose()
    return answers


class Stores:
    """A Replay of the pipeline's settings with its own async Redis client (one per event loop)."""

    def __init__(self, pipeline, **options):
        self.client = redis_client(pipeline.settings)
        self.stores = RuntimeStores(pipeline.settings, None, pipeline.cassandra, self.client)
        self.replay = self.stores.replay(drop_grace_s=0.2, **options)

    async def close(self):
        self.replay.close()
        await self.client.aclose()


def run_replay(pipeline, **kwargs):
    async def main():
        stores = Stores(pipeline)
        try:
            return await stores.replay.run(**kwargs)
        finally:
            await stores.close()
    return asyncio.run(main())


# --- tests --------------------------------------------------------------------------------


def test_replay_equals_the_live_views_keeps_what_arrives_meanwhile_and_switches(pipeline):
    prefix = uuid.uuid4().hex[:6]
    batch1 = workload(prefix)
    members = sorted({e.member_id for e in batch1})
    batch2 = follow_up(prefix, "b2", members, 200, seed=2)
    batch3 = follow_up(prefix, "b3", members, 200, seed=3, start=T0 + 150 * DAY)
    batch4 = follow_up(prefix, "b4", members, 100, seed=4, start=T0 + 200 * DAY)
    pipeline.start_worker()
    pipeline.publish(batch1)
    expected1, _ = expected_states(batch1)
    pipeline.wait_for_views(expected1)
    expected3, _ = expected_states(batch1 + batch2 + batch3)

    async def scenario():
        stores = Stores(pipeline)
        replay = stores.replay
        try:
            run = await replay.prepare()
            assert (run.old_ns, run.new_ns) == ("v1", "v2")
            await replay.rebuild(run)
            assert digests(views_of(pipeline, "v2")) == digests(expected1)
            assert run.events_read == run.events_in_range > 0 and run.duplicates == 0

            # Decided after the rebuild read the ledger: the event store is ahead of the new namespace.
            pipeline.publish(batch2)
            pipeline.wait_for_views(expected_states(batch1 + batch2)[0])
            report = await replay.verify(run)
            assert report.ok, [m.describe() for m in report.mismatches]
            assert report.behind, "batch 2 members must be behind the event store"
            await replay.top_up(run)

            # Published between the top-up and the switch: only the catch-up brings them over.
            pipeline.publish(batch3)
            pipeline.wait_for_views(expected3)  # the live projector serves v1, untouched by the replay
            assert active(pipeline) == "v1"
            assert digests(views_of(pipeline, "v1")) == digests(expected3)
            assert digests(views_of(pipeline, "v2")) != digests(expected3)
            before = await api_answers(pipeline.settings, stores.client, sorted(expected3))

            await replay.switch(run)
            assert active(pipeline) == "v2"
            await replay.catch_up(run)
            assert run.caught_up_entries > 0 and run.caught_up_applied > 0
            after = await api_answers(pipeline.settings, stores.client, sorted(expected3))
            return run, before, after
        finally:
            await stores.close()

    run, before, after = asyncio.run(scenario())
    assert run.switched
    assert digests(views_of(pipeline, "v2")) == digests(expected3) == digests(views_of(pipeline, "v1"))
    assert read_models_of(pipeline, "v2", sorted(expected3)) == digests(expected3)
    if create_api is not None:
        assert (before.pop("namespace"), after.pop("namespace")) == ("v1", "v2")
    assert after == before

    # After the switch the live projector writes the new namespace; the old one no longer moves.
    v1_before = digests(views_of(pipeline, "v1"))
    pipeline.publish(batch4)
    expected4, _ = expected_states(batch1 + batch2 + batch3 + batch4)
    wait_for_views_in(pipeline, "v2", expected4)
    assert digests(views_of(pipeline, "v2")) == digests(expected4)
    assert digests(views_of(pipeline, "v1")) == v1_before


def test_run_with_a_publish_before_the_switch_loses_nothing(pipeline):
    prefix = uuid.uuid4().hex[:6]
    batch1 = workload(prefix)
    batch2 = follow_up(prefix, "b2", sorted({e.member_id for e in batch1}), 150, seed=5)
    pipeline.start_worker()
    pipeline.publish(batch1)
    pipeline.wait_for_views(expected_states(batch1)[0])
    expected, _ = expected_states(batch1 + batch2)

    async def publish_meanwhile(run):
        pipeline.publish(batch2)
        pipeline.wait_for_views(expected)  # in the old namespace, which readers still use

    async def main():
        stores = Stores(pipeline)
        try:
            return await stores.replay.run(before_switch=publish_meanwhile)
        finally:
            await stores.close()

    run = asyncio.run(main())
    assert run.switched and run.caught_up_applied > 0 and active(pipeline) == "v2"
    assert digests(views_of(pipeline, "v2")) == digests(expected)
    assert read_models_of(pipeline, "v2", sorted(expected)) == digests(expected)


def test_verify_names_corrupted_members_and_a_replay_with_drop_old_repairs_them(pipeline):
    prefix = uuid.uuid4().hex[:6]
    events = workload(prefix)
    pipeline.start_worker()
    pipeline.publish(events)
    expected, _ = expected_states(events)
    pipeline.wait_for_views(expected)

    ok = ledger("verify", env=pipeline.env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().splitlines()[-1].startswith("OK namespace v1:")

    forged_id, deleted_id, summary_id = f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"
    client = pipeline.redis()
    real = expected[forged_id]
    forged = MemberState(member_id=forged_id, seq=real.seq + 10, plan=real.plan)
    client.hset(member_key("v1", forged_id), mapping={"seq": forged.seq, "state": encode_view(forged)})
    client.delete(member_key("v1", deleted_id))
    client.srem(members_key("v1", deleted_id), deleted_id)
    keyspace = pipeline.settings.cassandra_keyspace
    other = MemberState(member_id=summary_id, seq=expected[summary_id].seq, plan=real.plan)
    pipeline.cassandra.execute(  # a summary overwritten by a forged write at the same seq
        f"UPDATE {keyspace}.{summary_table('v1')} USING TIMESTAMP {expected[summary_id].seq + 1} "
        "SET state = %s WHERE member_id = %s", (encode_view(other), summary_id))

    bad = ledger("verify", "--settle", "1", env=pipeline.env)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    differs = [line for line in bad.stdout.splitlines() if line.startswith("DIFFERS ")]
    assert len(differs) == 3, bad.stdout
    text = "\n".join(differs)
    assert f"{forged_id}: redis seq {forged.seq} is ahead of the event store seq {real.seq}" in text
    assert f"{deleted_id}: missing from redis" in text
    assert f"{summary_id}: cassandra digest differs" in text
    assert bad.stdout.strip().splitlines()[-1].startswith("FAILED namespace v1: 3 of")

    replayed = ledger("replay", "--drop-old", env=pipeline.env)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "verified and switched readers v1 → v2" in replayed.stdout
    assert "replay: reading" in replayed.stdout and " events/s" in replayed.stdout  # plain progress lines
    assert active(pipeline) == "v2"
    assert digests(views_of(pipeline, "v2")) == digests(expected)

    # --drop-old: no key of v1 is left in Redis, no table of v1 in Cassandra
    assert list(client.scan_iter(match="ledger:v1:*", count=1000)) == []
    in_cassandra = asyncio.run(CassandraNamespaces(pipeline.cassandra, keyspace).namespaces())
    assert "v1" not in in_cassandra and "v2" in in_cassandra

    again = ledger("verify", env=pipeline.env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip().startswith("OK namespace v2:")

    refused = ledger("replay", "--namespace", "v2", env=pipeline.env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "ledger replay: namespace v2 is the active one: a replay builds a fresh namespace"
    assert "Traceback" not in refused.stderr


def test_from_timestamp_gives_the_same_digests_and_a_bad_copy_is_refused(pipeline):
    prefix = uuid.uuid4().hex[:6]
    batch1 = workload(prefix)
    members = sorted({e.member_id for e in batch1})
    touched = members[::3]  # batch 2 touches a third of the members (and a new one)
    batch2 = follow_up(prefix, "b2", touched, 150, seed=8)
    pipeline.start_worker()
    pipeline.publish(batch1)
    expected1, _ = expected_states(batch1)
    pipeline.wait_for_views(expected1)
    since = time.time_ns() // 1_000_000
    pipeline.publish(batch2)
    expected, _ = expected_states(batch1 + batch2)
    pipeline.wait_for_views(expected)
    grew = {m for m, s in expected.items() if m not in expected1 or s.seq > expected1[m].seq}

    run = run_replay(pipeline, from_timestamp=since)
    assert run.switched and (run.old_ns, run.new_ns) == ("v1", "v2")
    assert run.members_copied > 0 and run.gaps_filled > 0 and run.gap_entries > 0
    assert run.members_rebuilt == len(grew)  # members with ledger entries after the timestamp
    assert run.events_read < len(batch1)  # only the entries after the timestamp were read
    assert digests(views_of(pipeline, "v2")) == digests(expected) == digests(views_of(pipeline, "v1"))
    assert read_models_of(pipeline, "v2", sorted(expected)) == digests(expected)

    full = run_replay(pipeline, namespace="full", switch=False)
    assert not full.switched and full.verification.ok and active(pipeline) == "v2"
    assert digests(views_of(pipeline, "full")) == digests(expected)

    # A member corrupted in the active namespace and without entries after the timestamp is copied as
    # it is: the verification catches it and the switch is refused; a full replay repairs it.
    victim = next(m for m in members if m not in touched)
    wrong = MemberState(member_id=victim, seq=expected[victim].seq, plan=expected[victim].plan)
    pipeline.redis().hset(member_key("v2", victim), mapping={"seq": wrong.seq, "state": encode_view(wrong)})
    refused = run_replay(pipeline, from_timestamp=since)
    assert not refused.switched and refused.new_ns == "v3" and active(pipeline) == "v2"
    assert refused.verification.differing == [victim]

    repaired = run_replay(pipeline)
    assert repaired.switched and (repaired.old_ns, repaired.new_ns) == ("v2", "v4")  # v3 is left in place
    assert digests(views_of(pipeline, "v4")) == digests(expected)
    assert json.loads(pipeline.redis().hget(member_key("v4", victim), "state"))["seq"] == expected[victim].seq


class CatchUpFails:
    """The replay's ledger reader, whose second range read (the catch-up's) fails as a lost broker would."""

    def __init__(self, reader):
        self.reader = reader
        self.reads = 0

    def __getattr__(self, name):
        return getattr(self.reader, name)

    def read(self, start, end):  # a generator, like the reader's: the failure comes with the first batch
        self.reads += 1
        if self.reads == 2:
            raise LedgerReadError("the broker went away")
        yield from self.reader.read(start, end)


def test_a_replay_stopped_in_its_catch_up_is_finished_by_the_next_run_which_drops_the_old_once_acknowledged(pipeline):
    prefix = uuid.uuid4().hex[:6]
    batch1 = scripted_history(prefix) + random_history(prefix, members=20, events=400, seed=12)
    batch2 = follow_up(prefix, "b2", sorted({e.member_id for e in batch1}), 100, seed=13)
    pipeline.start_worker(LEDGER_PROJECTOR_ACK_TTL_S="4")
    pipeline.publish(batch1)
    pipeline.wait_for_views(expected_states(batch1)[0])
    expected, _ = expected_states(batch1 + batch2)

    async def publish_meanwhile(run):  # applied by the live projector to v1: only the catch-up brings it to v2
        pipeline.publish(batch2)
        pipeline.wait_for_views(expected)

    async def main():
        client = redis_client(pipeline.settings)
        stores = RuntimeStores(pipeline.settings, None, pipeline.cassandra, client)
        replay = stores.replay(ledger=lambda: CatchUpFails(stores.ledger_reader()), drop_grace_s=0.2)
        try:
            with pytest.raises(ReplayError, match="catching up after the switch to v2: the broker went away"):
                await replay.run(before_switch=publish_meanwhile, drop_old=True)
        finally:
            replay.close()
            await client.aclose()

    asyncio.run(main())
    assert active(pipeline) == "v2"
    assert json.loads(pipeline.redis().get("ledger:replay"))["phase"] == "catch-up"
    assert digests(views_of(pipeline, "v2")) != digests(expected)  # batch 2 is only in v1

    finished = ledger("replay", "--drop-old", env=pipeline.env)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "finished the replay that switched readers v1 → v2" in finished.stdout
    assert "(after 1 live projector(s) acknowledged v2)" in finished.stdout  # the worker's heartbeat
    assert digests(views_of(pipeline, "v2")) == digests(expected)
    assert read_models_of(pipeline, "v2", sorted(expected)) == digests(expected)
    assert list(pipeline.redis().scan_iter(match="ledger:v1:*", count=1000)) == []
    assert pipeline.redis().get("ledger:replay") is None
