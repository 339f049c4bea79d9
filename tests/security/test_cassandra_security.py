"""The secure Cassandra refuses anonymous, wrongly authenticated and plaintext clients, and each role
is held to its grants (deploy/security/cassandra-roles.cql, rendered for this session's keyspace)."""
from __future__ import annotations

import pytest

from tools.stack import secure_profile

TIMEOUT_S = 10.0


def _connect_error(stack_dir, principal, **kwargs) -> Exception:
    from cassandra.cluster import NoHostAvailable

    cluster = secure_profile.cassandra_cluster(stack_dir, principal, timeout=TIMEOUT_S, **kwargs)
    try:
        with pytest.raises(NoHostAvailable) as raised:
            cluster.connect()
    finally:
        cluster.shutdown()
    (error,) = raised.value.errors.values()
    return error


def test_an_anonymous_client_is_refused(secure_dir):
    from cassandra import AuthenticationFailed

    error = _connect_error(secure_dir, None)
    assert isinstance(error, AuthenticationFailed) and "requires authentication" in str(error), error


def test_a_wrong_password_is_refused(secure_dir):
    from cassandra import AuthenticationFailed

    error = _connect_error(secure_dir, "tools", password="not-the-password")
    assert isinstance(error, AuthenticationFailed) and "Provided username tools and/or password are incorrect" in str(
        error), error


def test_the_default_superuser_is_disabled(secure_dir):
    from cassandra import AuthenticationFailed

    error = _connect_error(secure_dir, "cassandra", password="cassandra")
    assert isinstance(error, AuthenticationFailed), error


def test_a_client_without_tls_is_refused(secure_dir):
    from cassandra import AuthenticationFailed

    error = _connect_error(secure_dir, "admin", tls=False)
    # The server reads the plaintext OPTIONS/STARTUP as a TLS handshake and resets the connection:
    # it never gets as far as asking for credentials.
    assert not isinstance(error, AuthenticationFailed), error
    assert isinstance(error, ConnectionResetError) or "closed" in str(error).lower(), repr(error)


@pytest.fixture
def session_of(secure_dir):
    clusters = []

    def connect(principal: str):
        cluster = secure_profile.cassandra_cluster(secure_dir, principal, timeout=TIMEOUT_S)
        clusters.append(cluster)
        return cluster.connect()

    yield connect
    for cluster in clusters:
        cluster.shutdown()


@pytest.mark.parametrize("statement", [
    "DROP TABLE {ks}.t",
    "DROP KEYSPACE {ks}",
    "ALTER TABLE {ks}.t ADD extra int",
    "CREATE ROLE intruder WITH LOGIN = true AND PASSWORD = 'x'",
    "GRANT SELECT ON KEYSPACE {ks} TO api",
])
def test_the_tools_role_cannot_drop_alter_or_manage_roles(session_of, cassandra_keyspace, statement):
    from cassandra import Unauthorized

    session = session_of("tools")
    with pytest.raises(Unauthorized):
        session.execute(statement.format(ks=cassandra_keyspace), timeout=TIMEOUT_S)


def test_the_tools_role_reads_writes_and_creates_tables(session_of, cassandra_keyspace):
    session = session_of("tools")
    session.execute(f"INSERT INTO {cassandra_keyspace}.t (k, v) VALUES ('tools', 1)", timeout=TIMEOUT_S)
    assert session.execute(f"SELECT v FROM {cassandra_keyspace}.t WHERE k = 'tools'", timeout=TIMEOUT_S).one().v == 1
    # a replay creates its new namespace's tables
    session.execute(f"CREATE TABLE {cassandra_keyspace}.t_v2 (k text PRIMARY KEY)", timeout=30)


@pytest.mark.parametrize("principal", ["decider", "projector"])
def test_the_workers_read_and_write_but_cannot_create_or_drop(session_of, cassandra_keyspace, principal):
    from cassandra import Unauthorized

    session = session_of(principal)
    session.execute(f"INSERT INTO {cassandra_keyspace}.t (k, v) VALUES (%s, 2)", [principal], timeout=TIMEOUT_S)
    assert session.execute(f"SELECT v FROM {cassandra_keyspace}.t WHERE k = %s", [principal],
                           timeout=TIMEOUT_S).one().v == 2
    for statement in (f"CREATE TABLE {cassandra_keyspace}.{principal}_x (k text PRIMARY KEY)",
                      f"DROP TABLE {cassandra_keyspace}.t"):
        with pytest.raises(Unauthorized):
            session.execute(statement, timeout=TIMEOUT_S)


def test_the_api_role_only_reads(session_of, cassandra_keyspace):
    from cassandra import Unauthorized

    session = session_of("api")
    session.execute(f"SELECT * FROM {cassandra_keyspace}.t LIMIT 1", timeout=TIMEOUT_S)
    with pytest.raises(Unauthorized):
        session.execute(f"INSERT INTO {cassandra_keyspace}.t (k, v) VALUES ('api', 3)", timeout=TIMEOUT_S)


def test_no_role_but_admin_reads_another_keyspace(session_of, cassandra_keyspace):
    """Grants are per keyspace: the roles see nothing of a keyspace they were not granted."""
    from cassandra import Unauthorized

    admin = session_of("admin")
    other = f"{cassandra_keyspace}_other"
    admin.execute(f"CREATE KEYSPACE IF NOT EXISTS {other} WITH replication = "
                  "{'class': 'SimpleStrategy', 'replication_factor': 1}", timeout=30)
    try:
        admin.execute(f"CREATE TABLE IF NOT EXISTS {other}.t (k text PRIMARY KEY)", timeout=30)
        with pytest.raises(Unauthorized):
            session_of("tools").execute(f"SELECT * FROM {other}.t", timeout=TIMEOUT_S)
    finally:
        admin.execute(f"DROP KEYSPACE IF EXISTS {other}", timeout=30)
