"""Fixtures shared by every test folder. Service fixtures connect lazily: unit tests never use them."""
from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from app.adapters.cassandra import session as cassandra_session
from app.config import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def kafka_admin(settings):
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap})


@pytest.fixture
def temp_topic(kafka_admin):
    """A fresh 3-partition topic, deleted afterwards."""
    created = []

    def make(partitions: int = 3, config: dict | None = None) -> str:
        name = f"test.{uuid.uuid4().hex[:12]}"
        kafka_admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(30)
        created.append(name)
        return name

    yield make
    if created:
        for f in kafka_admin.delete_topics(created).values():
            f.result(30)


@pytest.fixture(scope="session")
def cassandra(settings):
    cluster, session = cassandra_session.connect(settings)
    yield session
    cluster.shutdown()


@pytest.fixture(scope="session")
def test_keyspace(cassandra, settings):
    """A keyspace of its own with every migration applied, dropped at the end of the session."""
    from app.adapters.cassandra.migrations import migrate
    from app.config import REPO_ROOT

    keyspace = f"test_{uuid.uuid4().hex[:10]}"
    migrate(cassandra, REPO_ROOT / "deploy" / "cql", settings.environment, keyspace, echo=lambda *_: None)
    yield keyspace
    cassandra.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
