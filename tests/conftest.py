"""Fixtures shared by every test folder.

Tests under tests/integration and tests/e2e need the local stack: they are marked ``stack`` here,
so ``pytest -m "not stack"`` runs everything else with no service running. Tests under tests/cluster
need the cluster profile: marked ``cluster``, they skip themselves when it is not running. Tests under
tests/security need the secure profile: marked ``secure`` (and ``stack``), they skip themselves likewise. Service fixtures import
their drivers when first used, so a pure test never needs them.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from app.bootstrap import kafka_connection
from app.config import Settings

STACK_FOLDERS = ("integration", "e2e")
CLUSTER_FOLDERS = ("cluster",)
SECURE_FOLDERS = ("security",)


def pytest_collection_modifyitems(config, items):
    tests_root = Path(__file__).parent
    for item in items:
        relative = Path(str(item.fspath)).relative_to(tests_root)
        if relative.parts and relative.parts[0] in STACK_FOLDERS:
            item.add_marker(pytest.mark.stack)
        if relative.parts and relative.parts[0] in CLUSTER_FOLDERS:
            item.add_marker(pytest.mark.cluster)
        if relative.parts and relative.parts[0] in SECURE_FOLDERS:
            item.add_marker(pytest.mark.stack)
            item.add_marker(pytest.mark.secure)


@pytest.fixture(scope="session")
def cluster_lock():
    """One test session at a time on the cluster profile: its tests flush its Redis Cluster and move
    the namespace pointer. Session-wide, as flock is per open file: a second lock taken in the same
    process would wait for ever."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "download-ledger-cluster-profile.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
        fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def kafka_admin(settings):
    from confluent_kafka.admin import AdminClient

    return AdminClient(kafka_connection(settings).librdkafka())


def wait_for_topics(admin, names: list[str], partitions: int, timeout: float = 30.0) -> None:
    """create_topics returns when the controller accepted them; metadata can lag behind."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=10).topics
        if all(n in topics and topics[n].error is None and len(topics[n].partitions) == partitions for n in names):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"topics {names} not visible in the metadata after {timeout:.0f}s")
        time.sleep(0.1)


@pytest.fixture
def temp_topic(kafka_admin):
    """A fresh 3-partition topic, deleted afterwards."""
    from confluent_kafka.admin import NewTopic

    created = []

    def make(partitions: int = 3, config: dict | None = None) -> str:
        name = f"test.{uuid.uuid4().hex[:12]}"
        kafka_admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(30)
        created.append(name)
        wait_for_topics(kafka_admin, [name], partitions)
        return name

    yield make
    if created:
        for f in kafka_admin.delete_topics(created).values():
            f.result(30)


@pytest.fixture(scope="session")
def cassandra(settings):
    from app.adapters.cassandra import session as cassandra_session

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
