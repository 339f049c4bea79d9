"""`ledger migrate`: apply the CQL migrations in deploy/cql/."""
from __future__ import annotations

from pathlib import Path

from app.adapters.cassandra.migrations import MigrationError, migrate
from app.config import REPO_ROOT
from app.entrypoints.commands.errors import CommandError


def register(sub) -> None:
    p = sub.add_parser("migrate", help="apply the Cassandra schema migrations")
    p.add_argument("--dir", default=str(REPO_ROOT / "deploy" / "cql"))
    p.add_argument("--keyspace", help="default: LEDGER_CASSANDRA_KEYSPACE")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    from app import bootstrap

    keyspace = args.keyspace or settings.cassandra_keyspace
    try:
        cluster, session = bootstrap.cassandra(settings)
    except Exception as exc:
        raise CommandError(f"cannot connect to Cassandra at {settings.cassandra_hosts}: {exc}") from None
    try:
        migrate(session, Path(args.dir), settings.environment, keyspace)
    except MigrationError as exc:
        raise CommandError(str(exc)) from None
    finally:
        cluster.shutdown()
    return 0
