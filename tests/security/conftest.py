"""The secure profile's fixtures: its folder, and topics, a consumer group, a keyspace and Redis keys
of this session's own, with the role policy of deploy/security/ rendered for their names and applied
as admin (the same renderer `ledger stack up --profile secure` uses), removed at the end."""
from __future__ import annotations

import uuid

import pytest

from app.config import Settings
from tools.stack import credentials, manager, secure_profile, security_policy
from tools.stack.process import port_open

TIMEOUT_S = 10.0


@pytest.fixture(scope="session")
def secure_dir():
    stack_dir = manager.stack_dir_of(Settings().stack_dir, "secure")
    ports = {"Kafka": secure_profile.KAFKA_PORT, "Cassandra": secure_profile.CASSANDRA_PORT,
             "Redis": secure_profile.REDIS_PORT}
    closed = [f"{name} ({port})" for name, port in ports.items() if not port_open(secure_profile.HOST, port)]
    if closed or not credentials.password_file(stack_dir, "admin").exists():
        pytest.skip(f"the secure profile is not running ({', '.join(closed) or 'no credentials'} in {stack_dir}): "
                    "make stack-secure")
    return stack_dir


@pytest.fixture(scope="session")
def names():
    run = uuid.uuid4().hex[:10]
    return {"events_topic": f"sec-{run}.events", "ledger_topic": f"sec-{run}.ledger",
            "rejections_topic": f"sec-{run}.rejections", "dlq_topic": f"sec-{run}.dlq",
            "consumer_group": f"sec-{run}", "keyspace": f"sec_{run}", "redis_prefix": f"ledger:sec-{run}:"}


@pytest.fixture(scope="session")
def policy(secure_dir, names):
    return security_policy.policy_values(
        **{k: v for k, v in names.items() if k != "redis_prefix"}, passwords=credentials.passwords(secure_dir))


@pytest.fixture(scope="session")
def kafka_topics(secure_dir, names, policy):
    """This session's four topics with the role ACLs rendered for them."""
    from confluent_kafka.admin import AclBindingFilter, AdminClient, NewTopic

    admin = AdminClient(secure_profile.kafka_config(secure_dir))
    topics = [names[k] for k in ("events_topic", "ledger_topic", "rejections_topic", "dlq_topic")]
    for future in admin.create_topics([NewTopic(t, 2, 1) for t in topics], request_timeout=TIMEOUT_S).values():
        future.result(timeout=TIMEOUT_S)
    bindings = [security_policy.acl_binding(r) for r in security_policy.kafka_acls(policy)]
    for future in admin.create_acls(bindings, request_timeout=TIMEOUT_S).values():
        future.result(timeout=TIMEOUT_S)
    yield names
    filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                                b.permission_type) for b in bindings]
    for future in admin.delete_acls(filters, request_timeout=TIMEOUT_S).values():
        future.result(timeout=TIMEOUT_S)
    for future in admin.delete_topics(topics, request_timeout=TIMEOUT_S).values():
        future.result(timeout=TIMEOUT_S)


@pytest.fixture(scope="session")
def cassandra_keyspace(secure_dir, names, policy):
    """This session's keyspace with one table, and the roles' grants rendered for it."""
    cluster = secure_profile.cassandra_cluster(secure_dir, "admin")
    session = cluster.connect()
    ks = names["keyspace"]
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}",
                    timeout=30)
    session.execute(f"CREATE TABLE {ks}.t (k text PRIMARY KEY, v int)", timeout=30)
    for statement in security_policy.cassandra_statements(policy):
        session.execute(statement, timeout=TIMEOUT_S)
    yield ks
    session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=30)
    cluster.shutdown()


@pytest.fixture(scope="session")
def redis_prefix(secure_dir, names):
    yield names["redis_prefix"]
    admin = secure_profile.redis_client(secure_dir)
    keys = list(admin.scan_iter(match=names["redis_prefix"] + "*"))
    if keys:
        admin.unlink(*keys)
    admin.close()
