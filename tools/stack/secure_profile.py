"""The secure profile (``.stack-secure``): Kafka SASL_SSL + SCRAM-SHA-512 with ACLs, Cassandra with
password authentication, authorization and client TLS, Redis TLS-only with ACL users, on ports of
their own beside the plaintext local stack. Its principals are in `tools.stack.credentials`, what
each may do in ``deploy/security/`` (`tools.stack.security_policy`), its certificates in
`tools.stack.tls`.

This module holds the addresses and how a client reaches them as a principal: the ``LEDGER_*``
variables of `ledger stack env --profile secure`, and ready-made client settings for the stack's
own checks and the tests."""
from __future__ import annotations

from pathlib import Path

from tools.stack import credentials
from tools.stack.tls import TlsFiles

KAFKA_PORT, KAFKA_CONTROLLER_PORT = 9192, 9193
CASSANDRA_PORT, CASSANDRA_STORAGE_PORT, CASSANDRA_JMX_PORT = 9142, 7100, 7299
REDIS_PORT = 6380
HOST = "127.0.0.1"
SASL_MECHANISM = "SCRAM-SHA-512"


def tls_files(stack_dir: Path) -> TlsFiles:
    return TlsFiles(stack_dir / "tls")


def client_env(stack_dir: Path, principal: str = "admin") -> dict[str, str]:
    """What a process running as ``principal`` sets (file paths, never a password). The API has no
    Kafka identity, so its Kafka lines are left out."""
    password_file = str(credentials.password_file(stack_dir, principal))
    ca = str(tls_files(stack_dir).ca)
    env = {"LEDGER_STACK_DIR": str(stack_dir)}
    if principal != "api":
        env.update({
            "LEDGER_KAFKA_BOOTSTRAP": f"{HOST}:{KAFKA_PORT}",
            "LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LEDGER_KAFKA_SASL_MECHANISM": SASL_MECHANISM,
            "LEDGER_KAFKA_SASL_USERNAME": principal,
            "LEDGER_KAFKA_SASL_PASSWORD_FILE": password_file,
            "LEDGER_KAFKA_SSL_CA_FILE": ca,
        })
    env.update({
        "LEDGER_CASSANDRA_HOSTS": HOST,
        "LEDGER_CASSANDRA_PORT": str(CASSANDRA_PORT),
        "LEDGER_CASSANDRA_USERNAME": principal,
        "LEDGER_CASSANDRA_PASSWORD_FILE": password_file,
        "LEDGER_CASSANDRA_SSL_CA_FILE": ca,
        "LEDGER_REDIS_URL": f"rediss://{HOST}:{REDIS_PORT}/0",
        "LEDGER_REDIS_USERNAME": principal,
        "LEDGER_REDIS_PASSWORD_FILE": password_file,
        "LEDGER_REDIS_SSL_CA_FILE": ca,
    })
    return env


def login_env(stack_dir: Path, principal: str = "admin") -> dict[str, str]:
    """``client_env`` less the Redis URL: for a pipeline that names its own Redis database (the
    bench's, the tests'), which keeps the profile's addresses, logins and CA files."""
    return {k: v for k, v in client_env(stack_dir, principal).items() if k != "LEDGER_REDIS_URL"}


def kafka_config(stack_dir: Path, principal: str | None = "admin", *, password: str | None = None,
                 **extra) -> dict:
    """confluent-kafka settings for ``principal`` (None: TLS with no SASL, which the broker refuses);
    ``password`` overrides the stored one (the refusal tests)."""
    config = {"bootstrap.servers": f"{HOST}:{KAFKA_PORT}", "ssl.ca.location": str(tls_files(stack_dir).ca),
              "socket.timeout.ms": 5000, "security.protocol": "SSL"}
    if principal is not None:
        config.update({"security.protocol": "SASL_SSL", "sasl.mechanism": SASL_MECHANISM,
                       "sasl.username": principal,
                       "sasl.password": password if password is not None else credentials.password(stack_dir,
                                                                                                   principal)})
    return {**config, **extra}


def cassandra_cluster(stack_dir: Path, principal: str | None = "admin", *, password: str | None = None,
                      tls: bool = True, timeout: float = 5.0):
    """A cassandra-driver ``Cluster`` for ``principal`` (None: no credentials) over TLS, or not."""
    import ssl

    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    auth = None
    if principal is not None:
        auth = PlainTextAuthProvider(principal, password if password is not None
                                     else credentials.password(stack_dir, principal))
    ssl_context = None
    if tls:
        ssl_context = ssl.create_default_context(cafile=str(tls_files(stack_dir).ca))
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([HOST]), request_timeout=timeout)
    return Cluster([HOST], port=CASSANDRA_PORT, auth_provider=auth, ssl_context=ssl_context,
                   connect_timeout=timeout, control_connection_timeout=timeout,
                   execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=5)


def redis_client(stack_dir: Path, principal: str | None = "admin", *, password: str | None = None,
                 tls: bool = True, timeout: float = 3.0, db: int = 0, **options):
    """A synchronous redis-py client for ``principal`` (None: the default user, no AUTH)."""
    import redis

    kwargs: dict = {"host": HOST, "port": REDIS_PORT, "db": db, "socket_timeout": timeout,
                    "socket_connect_timeout": timeout, **options}
    if principal is not None:
        kwargs.update(username=principal,
                      password=password if password is not None else credentials.password(stack_dir, principal))
    if tls:
        kwargs.update(ssl=True, ssl_ca_certs=str(tls_files(stack_dir).ca))
    return redis.Redis(**kwargs)
