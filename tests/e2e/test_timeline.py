"""The timeline end to end: histories decided by a real worker, read back by `ledger history`, the
read API and `ledger whatif`.

- With the empty policy, a what-if over an end-to-end workload flips nothing: the stored histories
  re-decide exactly as the live decider decided them.
- A what-if writes nothing: Kafka topics, every Cassandra table of the keyspace and the Redis
  database are the same before and after a what-if from the CLI and from the API (and the CLI runs
  with Kafka and Redis pointed at nothing: it never needs them).
"""
from __future__ import annotations

import json
import uuid
from collections import Counter

from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient

from app.bootstrap import kafka_connection
from app.domain.decide import Accepted, Duplicate, step
from app.domain.policy import PlanLimits, Policy, StudioLimits
from app.domain.state import MemberState
from app.entrypoints.api import create_api
from tests.support.helpers import ledger
from tests.support.pipeline import PARTITIONS, assert_exact_outputs, scripted_history
from tests.support.random_history import random_history

TOKEN = "e2e-timeline"


def run_ledger(pipeline, *args, **env):
    result = ledger(*args, env={**pipeline.env, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout


def members_file(tmp_path, members) -> str:
    path = tmp_path / "members.txt"
    path.write_text("# the members of this test\n" + "\n".join(sorted(members)) + "\n")
    return str(path)


def oracle_flips(events, policy: Policy) -> Counter:
    """(recorded, under the policy) of every decided event, by deciding the inputs with the pure domain."""
    recorded: dict[str, MemberState] = {}
    whatif: dict[str, MemberState] = {}
    flips: Counter = Counter()
    for ev in events:
        d0, recorded[ev.member_id] = step(recorded.get(ev.member_id) or MemberState.empty(ev.member_id), ev)
        d1, whatif[ev.member_id] = step(whatif.get(ev.member_id) or MemberState.empty(ev.member_id), ev, policy)
        if isinstance(d0, Duplicate):
            continue
        a, b = (("accepted" if isinstance(d, Accepted) else str(d.reason)) for d in (d0, d1))
        if a != b:
            flips[(a, b)] += 1
    return flips


def test_the_empty_policy_flips_nothing_on_an_end_to_end_workload(pipeline, tmp_path):
    prefix = uuid.uuid4().hex[:6]
    events = scripted_history(prefix) + random_history(prefix, members=40, events=1500, seed=11)
    pipeline.start_worker()
    pipeline.publish(events)
    states, outcomes, _ = assert_exact_outputs(pipeline, events)

    (tmp_path / "empty.yaml").write_text("# no overrides\n")
    report = json.loads(run_ledger(pipeline, "whatif", "--policy", str(tmp_path / "empty.yaml"), "--json",
                                   "--members-file", members_file(tmp_path, states), "--concurrency", "4"))
    assert report["members"] == len(states) and report["unknown_members"] == 0
    assert report["events_redecided"] == len(outcomes)  # every decided event, duplicates excluded
    assert (report["flips"], report["members_affected"], report["transitions"], report["examples"]) == (0, 0, [], [])
    assert report["active_downloads"]["change"] == report["devices_in_use"]["change"] == 0
    at_clock = sum(len(s.active_licenses(s.clock)) for s in states.values())
    assert report["active_downloads"]["recorded"] == at_clock

    # the history of a member, as JSON lines, is its stored rows with the outcomes the domain gives
    member = f"{prefix}-a"
    lines = [json.loads(x) for x in run_ledger(pipeline, "history", member, "--json").splitlines()]
    assert [(x["seq"], x["sub"], x["event_id"]) for x in lines] == \
        [(r.seq, r.sub, r.event_id) for r in pipeline.stored_rows(member)]
    assert {x["event_id"]: x["reason"] or "accepted" for x in lines} == \
        {e.event_id: outcomes[e.event_id] for e in events if e.member_id == member}
    assert all(x["source"]["topic"] == pipeline.settings.events_topic for x in lines)
    table = run_ledger(pipeline, "history", member, "--limit", "3")
    assert "history of member" in table and "3 event(s)" in table


# --- a what-if writes nothing ----------------------------------------------------------------------

def kafka_state(pipeline) -> dict:
    consumer = Consumer({**kafka_connection(pipeline.settings).librdkafka(), "group.id": "unused"})
    try:
        s = pipeline.settings
        topics = (s.events_topic, s.ledger_topic, s.rejections_topic, s.dlq_topic)
        offsets = {(t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                   for t in topics for p in range(PARTITIONS)}
        suffix = s.events_topic.split(".")[1]
        ours = sorted(t for t in pipeline.admin.list_topics(timeout=10).topics if suffix in t)
        return {"offsets": offsets, "topics": ours}
    finally:
        consumer.close()


def cassandra_state(pipeline) -> dict:
    ks = pipeline.settings.cassandra_keyspace
    tables = sorted(r.table_name for r in pipeline.cassandra.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (ks,)))
    return {t: sorted(map(repr, pipeline.cassandra.execute(f"SELECT * FROM {ks}.{t}"))) for t in tables}


def redis_state(pipeline) -> dict:
    client = pipeline.redis()
    try:
        return {key: client.dump(key) for key in sorted(client.scan_iter(count=1000))}
    finally:
        client.close()


def test_a_whatif_writes_nothing_to_kafka_cassandra_or_redis(pipeline, tmp_path):
    prefix = uuid.uuid4().hex[:6]
    events = scripted_history(prefix) + random_history(prefix, members=20, events=600, seed=5)
    worker = pipeline.start_worker()
    pipeline.publish(events)
    states, _, _ = assert_exact_outputs(pipeline, events)
    worker.stop()  # nothing else writes from here on

    policy = Policy(plans={"p1": PlanLimits(device_limit=2, downloads_per_device=1)},
                    default_plan=PlanLimits(device_limit=3), studios={"s1": StudioLimits(1)})
    (tmp_path / "policy.yaml").write_text(
        "plans:\n  p1: {device_limit: 2, downloads_per_device: 1}\n"
        "default_plan: {device_limit: 3}\nstudios:\n  s1: {studio_concurrent_limit: 1}\n")
    expected = oracle_flips(events, policy)
    assert expected, "the policy must flip something for this test to mean anything"

    before = kafka_state(pipeline), cassandra_state(pipeline), redis_state(pipeline)
    assert before[1]["member_events_by_bucket"] and before[2]

    # the CLI, with Kafka and Redis pointed at nothing: it never even needs them
    report = json.loads(run_ledger(pipeline, "whatif", "--policy", str(tmp_path / "policy.yaml"), "--json",
                                   "--members-file", members_file(tmp_path, states),
                                   LEDGER_KAFKA_BOOTSTRAP="127.0.0.1:1", LEDGER_REDIS_URL="redis://127.0.0.1:1/0"))
    assert Counter({(t["recorded"], t["whatif"]): t["count"] for t in report["transitions"]}) == expected
    assert report["members_affected"] >= len(report["examples"]) > 0
    assert report["active_downloads"]["recorded"] == sum(len(s.active_licenses(s.clock)) for s in states.values())
    # every member of the keyspace, streamed (a sample of them too)
    run_ledger(pipeline, "whatif", "--policy", str(tmp_path / "policy.yaml"), "--sample", "5", "--seed", "1")

    # the read API's history and what-if
    app = create_api(pipeline.settings.model_copy(update={"api_tokens": TOKEN}),
                     pointer_key=f"test:{prefix}:active-namespace")
    with TestClient(app) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        member = f"{prefix}-a"
        assert client.get(f"/v1/members/{member}/history", headers=auth).status_code == 200
        r = client.post(f"/v1/members/{member}/whatif", headers=auth, json={"policy": {
            "plans": {"p1": {"device_limit": 2, "downloads_per_device": 1}}, "default_plan": {"device_limit": 3},
            "studios": {"s1": {"studio_concurrent_limit": 1}}}})
        assert r.status_code == 200, r.text
        assert r.json()["flip_count"] == sum(
            oracle_flips([e for e in events if e.member_id == member], policy).values())

    after = kafka_state(pipeline), cassandra_state(pipeline), redis_state(pipeline)
    assert after[0] == before[0], "Kafka changed"
    assert after[1] == before[1], "Cassandra changed"
    assert after[2] == before[2], "Redis changed"
