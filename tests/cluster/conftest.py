"""Fixtures of the cluster profile's tests: 3 Kafka brokers, 3 Cassandra nodes and a Redis Cluster
(`make test-cluster` starts them; without them every test here is skipped).

Each test gets topics of its own (replication 3, min.insync.replicas 2), a consumer group of its
own and a keyspace migrated for the ``cluster`` environment (replication 3); the Redis Cluster is
flushed before each test, and a lock file keeps two test sessions from sharing it (``cluster_lock``
in tests/conftest.py)."""
from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pytest

from app.bootstrap import kafka_connection, redis_sync_client
from app.config import REPO_ROOT, Settings
from tests.conftest import wait_for_topics
from tests.support.pipeline import PARTITIONS, Pipeline
from tools.stack import manager
from tools.stack.cluster_nodes import CASSANDRA_ADDRESSES, KAFKA_PORT, REDIS_PORTS, client_env, cluster_info
from tools.stack.process import port_open


def cluster_running() -> bool:
    try:
        return (port_open("127.0.0.1", KAFKA_PORT + 1) and port_open(CASSANDRA_ADDRESSES[0], 9042)
                and cluster_info("127.0.0.1", REDIS_PORTS[0])["state"] == "ok")
    except Exception:  # a node not answering: the profile is not up
        return False


@pytest.fixture(scope="session")
def cluster_settings() -> Settings:
    if not cluster_running():
        pytest.skip("the cluster profile is not running (make stack-cluster, or make test-cluster)")
    env = client_env()
    return Settings(environment=env["LEDGER_ENVIRONMENT"], kafka_bootstrap=env["LEDGER_KAFKA_BOOTSTRAP"],
                    cassandra_hosts=env["LEDGER_CASSANDRA_HOSTS"], redis_url=env["LEDGER_REDIS_URL"])


@pytest.fixture(scope="session")
def cluster_stack_dir(cluster_settings) -> Path:
    return manager.stack_dir_of(Settings().stack_dir, "cluster")


@pytest.fixture(scope="session")
def cluster_admin(cluster_settings):
    from confluent_kafka.admin import AdminClient

    return AdminClient(kafka_connection(cluster_settings).librdkafka())


@pytest.fixture(scope="session")
def cluster_cassandra(cluster_settings):
    from app.adapters.cassandra import session as cassandra_session

    cluster, session = cassandra_session.connect(cluster_settings)
    yield session
    cluster.shutdown()


@pytest.fixture(scope="session")
def cluster_keyspace(cluster_cassandra, cluster_settings):
    from app.adapters.cassandra.migrations import migrate

    keyspace = f"test_{uuid.uuid4().hex[:10]}"
    migrate(cluster_cassandra, REPO_ROOT / "deploy" / "cql", "cluster", keyspace, echo=lambda *_: None)
    yield keyspace
    with contextlib.suppress(Exception):  # a node may be down at the end of a failed test
        cluster_cassandra.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


def flush_redis_cluster(settings: Settings) -> None:
    from redis.cluster import RedisCluster

    client = redis_sync_client(settings)
    try:
        client.flushall(target_nodes=RedisCluster.PRIMARIES)
    finally:
        client.close()


@pytest.fixture
def cluster_pipeline(tmp_path, cluster_lock, cluster_admin, cluster_cassandra, cluster_keyspace, cluster_settings):
    from confluent_kafka.admin import NewTopic

    suffix = uuid.uuid4().hex[:8]
    env = {
        **client_env(),
        "LEDGER_EVENTS_TOPIC": f"cl.{suffix}.events",
        "LEDGER_LEDGER_TOPIC": f"cl.{suffix}.ledger",
        "LEDGER_REJECTIONS_TOPIC": f"cl.{suffix}.rejections",
        "LEDGER_DLQ_TOPIC": f"cl.{suffix}.dlq",
        "LEDGER_CONSUMER_GROUP": f"cl-{suffix}",
        "LEDGER_CASSANDRA_KEYSPACE": cluster_keyspace,
        "LEDGER_SESSION_TIMEOUT_S": "10",
        "LEDGER_BATCH_WAIT_MS": "50",
    }
    settings = cluster_settings.model_copy(update={
        "events_topic": env["LEDGER_EVENTS_TOPIC"], "ledger_topic": env["LEDGER_LEDGER_TOPIC"],
        "rejections_topic": env["LEDGER_REJECTIONS_TOPIC"], "dlq_topic": env["LEDGER_DLQ_TOPIC"],
        "consumer_group": env["LEDGER_CONSUMER_GROUP"], "cassandra_keyspace": cluster_keyspace,
    })
    topics = [env[k] for k in ("LEDGER_EVENTS_TOPIC", "LEDGER_LEDGER_TOPIC", "LEDGER_REJECTIONS_TOPIC",
                               "LEDGER_DLQ_TOPIC")]
    new = [NewTopic(t, PARTITIONS, 3, config={"min.insync.replicas": "2"}) for t in topics]
    for f in cluster_admin.create_topics(new).values():
        f.result(30)
    wait_for_topics(cluster_admin, topics, PARTITIONS)
    flush_redis_cluster(settings)
    p = Pipeline(settings, env, tmp_path, cluster_admin, cluster_cassandra)
    yield p
    for w in p.workers:
        w.stop()
    with contextlib.suppress(Exception):
        for f in cluster_admin.delete_topics(topics).values():
            f.exception(30)
