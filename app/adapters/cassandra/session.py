"""A cassandra-driver session configured from Settings."""
from __future__ import annotations

import logging
import re
import ssl
from collections import namedtuple
from functools import lru_cache

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy

REQUEST_TIMEOUT_S = 15  # every statement without a timeout of its own (the driver's default is 10)
CONNECT_TIMEOUT_S = 10  # opening a connection to a node (driver default 5, raised for a loaded node)
CONTROL_CONNECTION_TIMEOUT_S = 10  # the control connection's metadata queries (driver default 2)
# Reconnecting to a node that went down: 1 s, 2 s, ... capped at 30 s, each +/-15% jitter from the
# driver, forever. The driver's default waits up to 600 s between attempts and gives up for good
# after 64 of them, so a worker would never see a Cassandra node again after a long outage.
RECONNECT_BASE_S, RECONNECT_MAX_S = 1.0, 30.0


class _DeliberateBatches(logging.Filter):
    """Drops the server's warning about unlogged batches across partitions: the event-id lookup
    entries and the summaries are written that way on purpose (one statement for many members),
    and the driver would log a line per batch. Every other server warning still goes through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.args and "Unlogged batch covering" in str(record.args[0]))


_BATCH_WARNINGS = _DeliberateBatches()


def connect(settings, keyspace: str | None = None):
    """Returns (cluster, session); reads and writes at LEDGER_CASSANDRA_CONSISTENCY (LOCAL_QUORUM),
    the conditions' Paxos at LEDGER_CASSANDRA_SERIAL_CONSISTENCY (LOCAL_SERIAL). On one node both
    are met by that node; with replication 3 each survives one replica down."""
    logging.getLogger("cassandra.protocol").addFilter(_BATCH_WARNINGS)  # once: a filter is kept once
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.cassandra_local_dc)),
        consistency_level=consistency_level(settings.cassandra_consistency),
        serial_consistency_level=consistency_level(settings.cassandra_serial_consistency),
        request_timeout=REQUEST_TIMEOUT_S,
        row_factory=cached_named_tuple_factory,
    )
    cluster = Cluster(
        settings.cassandra_contact_points, port=settings.cassandra_port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=5,
        connect_timeout=CONNECT_TIMEOUT_S, control_connection_timeout=CONTROL_CONNECTION_TIMEOUT_S,
        reconnection_policy=ExponentialReconnectionPolicy(RECONNECT_BASE_S, RECONNECT_MAX_S, max_attempts=None),
        auth_provider=auth_provider(settings), ssl_context=tls_context(settings),
    )
    session = cluster.connect(keyspace)
    return cluster, session


def auth_provider(settings) -> PlainTextAuthProvider | None:
    """A login for PasswordAuthenticator (LEDGER_CASSANDRA_USERNAME and _PASSWORD[_FILE]), or none."""
    if not settings.cassandra_username:
        return None
    if settings.cassandra_password is None:
        raise ValueError("LEDGER_CASSANDRA_USERNAME needs a password (LEDGER_CASSANDRA_PASSWORD[_FILE])")
    return PlainTextAuthProvider(settings.cassandra_username, settings.cassandra_password.get_secret_value())


def tls_context(settings) -> ssl.SSLContext | None:
    """TLS to every node, its certificate checked against LEDGER_CASSANDRA_SSL_CA_FILE (or the system's
    CAs) and its address; a client certificate too when one is set."""
    if not settings.cassandra_tls:
        return None
    ca = settings.cassandra_ssl_ca_file
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if settings.cassandra_ssl_cert_file:
        context.load_cert_chain(str(settings.cassandra_ssl_cert_file), str(settings.cassandra_ssl_key_file))
    return context


def consistency_level(name: str) -> int:
    """The driver's level named ``name`` (LOCAL_QUORUM, LOCAL_SERIAL, ...)."""
    try:
        return ConsistencyLevel.name_to_value[name.upper()]
    except KeyError:
        raise ValueError(f"unknown Cassandra consistency level {name!r}") from None


def cached_named_tuple_factory(colnames, rows):
    """Rows as named tuples, like the driver's default, but with one class per column list: the
    default builds a new namedtuple class for every response, which profiled at ~15% of a worker's
    CPU (most responses here are single-row LWT results and point reads)."""
    row = _row_class(tuple(colnames))
    return [row(*r) for r in rows]


@lru_cache(maxsize=512)
def _row_class(colnames: tuple[str, ...]):
    names = [re.sub(r"[^a-zA-Z0-9_]", "_", c).strip("_") or "column" for c in colnames]
    return namedtuple("Row", names, rename=True)
