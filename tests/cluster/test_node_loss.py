"""Node loss on the cluster profile: with two workers and the read API running and events flowing,
one node is SIGKILLed, left down for a while, then started again; each of Kafka (the broker that
leads the most of the pipeline's partitions), Cassandra (the seed, the driver's first contact
point) and Redis (the master holding a probed member's view: its replica is promoted) in turn.

Each run must end with views equal to the pure domain's, every accepted event stored and published
once (nothing lost, nothing doubled: `assert_exact_outputs`), and an API that kept answering; the
API's errors, its longest gap, the node's restart time and the catch-up time are printed."""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from app.adapters.redis.view_store import DEFAULT_NAMESPACE, member_key
from tests.cluster.faults import ApiProbe, ApiProcess, publish_paced, report
from tests.support.helpers import wait_until
from tests.support.pipeline import assert_exact_outputs
from tests.support.random_history import random_history
from tools.stack import manager

DOWN_S = 15.0  # how long the node stays down: past the failure detectors (Kafka 3 s, Redis 2 s, Cassandra ~19 s)
API_GAP_BOUND_S = 20.0  # the read API may fail a member's requests for at most this long
SEEDS = {"kafka": 21, "cassandra": 22, "redis": 23}


def kafka_victim(pipeline) -> str:
    """The broker leading the most partitions of the pipeline's input and ledger topics."""
    topics = pipeline.admin.list_topics(timeout=10).topics
    leaders = Counter(p.leader for name in (pipeline.settings.events_topic, pipeline.settings.ledger_topic)
                      for p in topics[name].partitions.values())
    return f"kafka-{leaders.most_common(1)[0][0]}"


def redis_victim(pipeline, member: str) -> str:
    node = pipeline.redis().get_node_from_key(member_key(DEFAULT_NAMESPACE, member))
    return f"redis-{node.port}"


@pytest.mark.parametrize("kind", ["kafka", "cassandra", "redis"])
def test_a_node_killed_mid_stream_loses_nothing_and_the_api_keeps_answering(kind, cluster_pipeline,
                                                                           cluster_stack_dir, tmp_path):
    pipeline = cluster_pipeline
    prefix = uuid.uuid4().hex[:6]
    events = random_history(prefix, members=60, events=2400, seed=SEEDS[kind])
    members = sorted({e.member_id for e in events})
    probed = members[:8]
    first, rest = events[:len(members)], events[len(members):]  # every member's plan first

    for i in range(2):
        pipeline.start_worker(LEDGER_CONSUMER_GROUP_INSTANCE_ID=f"{prefix}-w{i}")
    pipeline.publish(first)
    wait_until(lambda: all(pipeline.redis().exists(member_key(DEFAULT_NAMESPACE, m)) for m in probed), 120,
               interval=0.5, message="the probed members' views")
    api = ApiProcess(pipeline.env, tmp_path / "api.log")
    probe = ApiProbe(api.port, probed)
    probe.start()

    done, failures = threading.Event(), []
    publisher = threading.Thread(target=publish_paced, args=(pipeline, rest, 40, 0.5, done, failures), daemon=True)
    publisher.start()
    time.sleep(4)
    victim = {"kafka": kafka_victim(pipeline), "cassandra": "cassandra-1",
              "redis": redis_victim(pipeline, probed[0])}[kind]
    restarted_in = None
    try:
        manager.signal_service(cluster_stack_dir, victim, "kill", echo=lambda *_: None)
        killed_at = time.monotonic()
        time.sleep(DOWN_S)
        restarted_in = manager.up(cluster_stack_dir, echo=lambda *_: None, only=victim)[victim]
        back_at = time.monotonic() - killed_at
    finally:
        if restarted_in is None:  # leave the cluster whole for the next test
            manager.up(cluster_stack_dir, echo=lambda *_: None, only=victim)
    publisher.join(300)
    assert done.is_set() and not failures, failures
    published_at = time.monotonic()

    assert_exact_outputs(pipeline, events)
    caught_up_in = time.monotonic() - published_at
    time.sleep(1)
    api_figures = probe.stop()
    api.stop()
    figures = {"victim": victim, "down_s": DOWN_S, "node_answering_again_s": round(restarted_in, 1),
               "node_back_after_kill_s": round(back_at, 1), "catch_up_s": round(caught_up_in, 1),
               "events": len(events), "api": api_figures,
               "worker_batch_retries": sum(w.log_text().count("failed (") for w in pipeline.workers)}
    report(tmp_path, kind, figures)
    assert all(w.alive for w in pipeline.workers), "a worker died"
    assert api_figures["longest_gap_s"] < API_GAP_BOUND_S, figures
    assert api_figures["requests"] > 100, figures
