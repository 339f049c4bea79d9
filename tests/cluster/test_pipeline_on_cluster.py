"""The whole pipeline on the cluster profile: two workers, topics with replication 3, a keyspace
with replication 3 at LOCAL_QUORUM / LOCAL_SERIAL, views in a Redis Cluster; then a replay and a
verify, whose namespace operations (SCAN, UNLINK, the members sets) run over every master."""
from __future__ import annotations

import contextlib
import uuid

import pytest

from app.adapters.cassandra.migrations import migrate
from app.adapters.redis.view_store import ACTIVE_NAMESPACE_KEY, all_members_keys
from app.config import REPO_ROOT
from tests.support.helpers import ledger
from tests.support.pipeline import assert_exact_outputs, scripted_history
from tests.support.random_history import random_history


@pytest.fixture
def cluster_keyspace(cluster_cassandra):
    """A keyspace of this test's own (verify and replay read every member of the keyspace, and the
    session's keyspace holds the other tests' members, whose views were flushed with Redis)."""
    keyspace = f"test_{uuid.uuid4().hex[:10]}"
    migrate(cluster_cassandra, REPO_ROOT / "deploy" / "cql", "cluster", keyspace, echo=lambda *_: None)
    yield keyspace
    with contextlib.suppress(Exception):
        cluster_cassandra.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


def test_two_workers_on_the_cluster_then_replay_and_verify(cluster_pipeline):
    pipeline = cluster_pipeline
    prefix = uuid.uuid4().hex[:6]
    events = scripted_history(prefix) + random_history(prefix, members=80, events=1500, seed=11)
    pipeline.start_worker(loglevel="info", LEDGER_CONSUMER_GROUP_INSTANCE_ID="w0")
    pipeline.start_worker(loglevel="info", LEDGER_CONSUMER_GROUP_INSTANCE_ID="w1")
    pipeline.publish(events)
    states, _, _ = assert_exact_outputs(pipeline, events)

    client = pipeline.redis()
    masters = {client.get_node_from_key(key).name for key in all_members_keys("v1")}
    assert len(masters) == 3, "the members sets of a namespace are spread over every master"

    ok = ledger("verify", env=pipeline.env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().splitlines()[-1].startswith(f"OK namespace v1: {len(states)}")

    replayed = ledger("replay", "--drop-old", env=pipeline.env)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "verified and switched readers v1 → v2" in replayed.stdout
    assert client.get(ACTIVE_NAMESPACE_KEY) == b"v2"
    assert list(client.scan_iter(match="ledger:v1:*", count=1000)) == []  # SCAN of every master

    again = ledger("verify", env=pipeline.env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip().splitlines()[-1].startswith(f"OK namespace v2: {len(states)}")
