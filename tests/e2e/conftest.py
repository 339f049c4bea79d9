"""End-to-end fixtures: each test gets its own topics, consumer group and Redis database, and member
ids of its own in a keyspace shared by the session, so tests never see each other's data. The
harness itself lives in tests/support/pipeline.py."""
from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import NewTopic

from app.bootstrap import redis_sync_client
from tests.conftest import wait_for_topics
from tests.support.pipeline import PARTITIONS, Pipeline, redis_db_lease


@pytest.fixture
def redis_db():
    with redis_db_lease() as db:
        yield db


@pytest.fixture
def pipeline(tmp_path, kafka_admin, cassandra, test_keyspace, settings, redis_db):
    suffix = uuid.uuid4().hex[:8]
    db = redis_db
    env = {
        "LEDGER_EVENTS_TOPIC": f"e2e.{suffix}.events",
        "LEDGER_LEDGER_TOPIC": f"e2e.{suffix}.ledger",
        "LEDGER_REJECTIONS_TOPIC": f"e2e.{suffix}.rejections",
        "LEDGER_DLQ_TOPIC": f"e2e.{suffix}.dlq",
        "LEDGER_CONSUMER_GROUP": f"e2e-{suffix}",
        "LEDGER_CASSANDRA_KEYSPACE": test_keyspace,
        "LEDGER_REDIS_URL": settings.redis_url_for(db),
        "LEDGER_SESSION_TIMEOUT_S": "6",
        "LEDGER_BATCH_WAIT_MS": "50",
    }
    p_settings = settings.model_copy(update={
        "events_topic": env["LEDGER_EVENTS_TOPIC"], "ledger_topic": env["LEDGER_LEDGER_TOPIC"],
        "rejections_topic": env["LEDGER_REJECTIONS_TOPIC"], "dlq_topic": env["LEDGER_DLQ_TOPIC"],
        "cassandra_keyspace": test_keyspace, "redis_url": env["LEDGER_REDIS_URL"],
        "consumer_group": env["LEDGER_CONSUMER_GROUP"],
    })
    topics = [env[k] for k in ("LEDGER_EVENTS_TOPIC", "LEDGER_LEDGER_TOPIC", "LEDGER_REJECTIONS_TOPIC", "LEDGER_DLQ_TOPIC")]
    for f in kafka_admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics]).values():
        f.result(30)
    wait_for_topics(kafka_admin, topics, PARTITIONS)
    redis_sync_client(settings, env["LEDGER_REDIS_URL"]).flushdb()
    p = Pipeline(p_settings, env, tmp_path, kafka_admin, cassandra)
    yield p
    for w in p.workers:
        w.stop()
    for f in kafka_admin.delete_topics(topics).values():
        f.exception(30)
