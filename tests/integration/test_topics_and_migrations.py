"""`ledger topics` and `ledger migrate` are idempotent, report drift and refuse unsafe changes."""
from __future__ import annotations

import shutil
import uuid

from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from app.config import REPO_ROOT
from tests.support.helpers import ledger


def _topic_dir(tmp_path, name: str, partitions: int) -> None:
    (tmp_path / "t.yaml").write_text(
        f"name: {name}\npartitions: {partitions}\nreplication_factor: 3\n"
        "config:\n  retention.ms: 604800000\n  cleanup.policy: delete\n  min.insync.replicas: 2\n"
        "environments:\n  local:\n    replication_factor: 1\n    config:\n      min.insync.replicas: 1\n")


def test_topics_apply_is_idempotent_and_reports_drift(tmp_path, kafka_admin):
    name = f"test.topics.{uuid.uuid4().hex[:10]}"
    _topic_dir(tmp_path, name, 3)
    try:
        first = ledger("topics", "apply", "--dir", str(tmp_path))
        assert first.returncode == 0, first.stderr
        assert f"create {name}" in first.stdout

        second = ledger("topics", "apply", "--dir", str(tmp_path))
        assert second.returncode == 0, second.stderr
        assert "nothing to change" in second.stdout

        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
            ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
        for f in kafka_admin.incremental_alter_configs([resource]).values():
            f.result(30)
        diff = ledger("topics", "diff", "--dir", str(tmp_path))
        assert f"config {name}: retention.ms 1000 -> 604800000" in diff.stdout

        _topic_dir(tmp_path, name, 6)
        grown = ledger("topics", "apply", "--dir", str(tmp_path))
        assert grown.returncode == 0, grown.stderr
        assert f"partitions {name}: 3 -> 6" in grown.stdout
        assert "nothing to change" in ledger("topics", "apply", "--dir", str(tmp_path)).stdout

        _topic_dir(tmp_path, name, 2)
        lowered = ledger("topics", "apply", "--dir", str(tmp_path))
        assert lowered.returncode != 0
        assert "lowering partitions 6 -> 2" in lowered.stderr
        assert "Traceback" not in lowered.stderr
    finally:
        for f in kafka_admin.delete_topics([name]).values():
            f.exception(30)


def test_migrate_runs_each_migration_once_and_refuses_an_edited_one(tmp_path, cassandra):
    keyspace = f"test_migrate_{uuid.uuid4().hex[:8]}"
    migrations = tmp_path / "cql"
    shutil.copytree(REPO_ROOT / "deploy" / "cql", migrations)
    try:
        first = ledger("migrate", "--dir", str(migrations), "--keyspace", keyspace)
        assert first.returncode == 0, first.stderr
        assert "applied 0001_keyspace.cql" in first.stdout
        rows = cassandra.execute(f"SELECT version, checksum FROM {keyspace}.schema_migrations")
        assert len(list(rows)) == len(list(migrations.glob("*.cql")))

        second = ledger("migrate", "--dir", str(migrations), "--keyspace", keyspace)
        assert second.returncode == 0, second.stderr
        assert "applied" not in second.stdout.replace("migrations applied", "")
        assert "up to date" in second.stdout

        edited = migrations / "0002_event_store.cql"
        edited.write_text(edited.read_text() + "\n-- an edit after the fact\n")
        refused = ledger("migrate", "--dir", str(migrations), "--keyspace", keyspace)
        assert refused.returncode != 0
        assert "0002_event_store.cql was changed after it was applied" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        cassandra.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)


def test_migrate_copies_a_keyspace_of_the_per_member_layout_into_the_buckets(tmp_path, cassandra):
    """A keyspace migrated up to 0007 holds decisions in member_events; `ledger migrate` applies 0008
    and its data step, after which the store (which reads only the buckets) loads every member."""
    import asyncio

    from app.adapters.cassandra.event_store import COLUMNS, CassandraEventStore
    from tests.support.domain_builders import T0, acquire, event, plan
    from tests.support.histories import decided

    keyspace = f"test_migrate_{uuid.uuid4().hex[:8]}"
    old = tmp_path / "cql"
    shutil.copytree(REPO_ROOT / "deploy" / "cql", old)
    for later in [p for p in old.glob("*.cql") if int(p.name[:4]) >= 8]:
        later.unlink()
    try:
        assert ledger("migrate", "--dir", str(old), "--keyspace", keyspace).returncode == 0
        members = [f"m-{uuid.uuid4().hex[:10]}" for _ in range(5)]
        insert = cassandra.prepare(f"INSERT INTO {keyspace}.member_events ({COLUMNS}) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        expected = {}
        for m in members:
            events = [event(p, at=T0 + i, member=m, event_id=f"{m}-{i}") for i, p in
                      enumerate([plan(), acquire("l1"), acquire("l2", device="d2")])]
            _, decisions, expected[m] = decided(events, m)
            for d in decisions:
                cassandra.execute(insert, (m, d.seq, d.sub, d.kind, d.event.event_id, d.clock, "DownloadEvent.v1",
                                           _encoded(d), d.reason, d.detail, "t", 0, d.seq))

        result = ledger("migrate", "--keyspace", keyspace)
        assert result.returncode == 0, result.stderr
        assert "applied 0008_member_events_by_bucket.cql" in result.stdout
        assert "copied into buckets: 5 members" in result.stdout
        store = CassandraEventStore(cassandra, keyspace)
        assert asyncio.run(store.load_many(members)) == {m: _loaded(expected[m]) for m in members}
    finally:
        cassandra.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)


def _encoded(decision):
    from app.adapters.avro.mapping import encode_event

    return encode_event(decision.event)


def _loaded(state):
    from app.service.ports import LoadedState

    return LoadedState(state, 3)
