"""Versioned CQL migrations (deploy/cql/NNNN_name.cql), each applied once and recorded with its checksum.

A migration file that changed after it was applied stops the run: published schema history is never
rewritten; a change is a new migration. A migration may have a data step (DATA_STEPS), run after its
statements and before it is recorded as applied, so that a run stopped part way redoes it.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_EVENT_BUCKETS = 12  # an environment that does not say (deploy/cql/environments.yaml)
MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.cql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def statements(self, params: dict[str, str]) -> list[str]:
        text = "\n".join(line for line in self.path.read_text().splitlines() if not line.strip().startswith("--"))
        for key, value in params.items():
            text = text.replace("{" + key + "}", value)
        return [s.strip() for s in text.split(";") if s.strip()]


def _copy_into_buckets(session, keyspace: str, echo) -> None:
    from app.adapters.cassandra.bucket_copy import copy_member_events

    copy_member_events(session, keyspace, echo)


DATA_STEPS = {"0008_member_events_by_bucket.cql": _copy_into_buckets}


def discover(directory: Path) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.cql")):
        m = MIGRATION_FILE.match(path.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version in {directory}")
    return found


def params_for(directory: Path, environment: str, keyspace: str) -> dict[str, str]:
    environments = yaml.safe_load((directory / "environments.yaml").read_text())
    if environment not in environments:
        raise MigrationError(f"no replication for environment {environment!r} in {directory}/environments.yaml")
    chosen = environments[environment]
    return {"keyspace": keyspace, "replication": chosen["replication"],
            "event_buckets": str(int(chosen.get("event_buckets", DEFAULT_EVENT_BUCKETS)))}


def applied(session, keyspace: str) -> dict[int, str]:
    rows = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s AND table_name = 'schema_migrations'",
        (keyspace,),
    )
    if not rows.one():
        return {}
    return {r.version: r.checksum for r in session.execute(f"SELECT version, checksum FROM {keyspace}.schema_migrations")}


def migrate(session, directory: Path, environment: str, keyspace: str, echo=print) -> list[Migration]:
    """Apply pending migrations in order; refuse if an applied one's file has changed."""
    migrations = discover(directory)
    done = applied(session, keyspace)
    for m in migrations:
        if m.version in done and done[m.version] != m.checksum:
            raise MigrationError(
                f"migration {m.path.name} was changed after it was applied "
                f"(recorded checksum {done[m.version][:12]}, file {m.checksum[:12]}); add a new migration instead")
    params = params_for(directory, environment, keyspace)
    ran = []
    for m in migrations:
        if m.version in done:
            continue
        for statement in m.statements(params):
            try:
                session.execute(statement, timeout=60)
            except Exception as exc:  # the driver's errors carry the server's message
                raise MigrationError(f"{m.path.name} failed: {exc}") from None
        step = DATA_STEPS.get(m.path.name)
        if step is not None:
            try:
                step(session, keyspace, echo)
            except Exception as exc:  # a timeout or an unavailable node: the next run redoes the step
                raise MigrationError(f"{m.path.name} data step failed (run `ledger migrate` again): "
                                     f"{type(exc).__name__}: {exc}") from None
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations "
            "(version int PRIMARY KEY, name text, checksum text, applied_at timestamp)", timeout=60)
        session.execute(
            f"INSERT INTO {keyspace}.schema_migrations (version, name, checksum, applied_at) "
            "VALUES (%s, %s, %s, toTimestamp(now()))", (m.version, m.name, m.checksum))
        echo(f"applied {m.path.name}")
        ran.append(m)
    if not ran:
        echo(f"schema is up to date ({len(migrations)} migrations applied)")
    return ran
