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
