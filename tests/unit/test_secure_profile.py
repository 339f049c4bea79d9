"""The secure profile's files, made without a service: the role policy rendered from deploy/security/,
the certificates and passwords, each server's configuration, and the variables of `ledger stack env`."""
from __future__ import annotations

import hashlib
import stat
import subprocess
from pathlib import Path

import pytest

from app.config import Settings
from tests.support.kafka_acls import expected_kafka_acls, with_implied
from tools.stack import credentials, manager, secure_profile, security_policy, tls
from tools.stack.secure_cassandra import SecureCassandra
from tools.stack.secure_kafka import SecureKafka
from tools.stack.secure_redis import SecureRedis

PASSWORDS = {p: f"pw-of-{p}" for p in credentials.PRINCIPALS}


@pytest.fixture
def values():
    return security_policy.policy_values(events_topic="t.events", ledger_topic="t.ledger", rejections_topic="t.rej",
                                         dlq_topic="t.dlq", consumer_group="grp", keyspace="ks", passwords=PASSWORDS)


def test_render_fills_placeholders_and_drops_comments():
    assert security_policy.render("# ${NOT_FILLED}\n\n  a ${X} b  \n", {"X": "1"}) == ["a 1 b"]
    assert security_policy.render("-- ${NOT_FILLED}\nx ${X};", {"X": "2"}, comment="--") == ["x 2;"]


def test_an_unknown_placeholder_is_an_error_that_shows_no_value():
    with pytest.raises(security_policy.PolicyError, match=r"\$\{MISSING\}") as raised:
        security_policy.render("user ${SECRET} ${MISSING}", {"SECRET": "hunter2"})
    assert "hunter2" not in str(raised.value)


def test_kafka_acls_hold_each_role_to_its_topics_and_groups(values):
    rules = security_policy.kafka_acls(values)
    by = {(r.principal, r.operation, r.resource_type, r.pattern_type, r.name) for r in rules}
    assert {r.principal for r in rules} == {"decider", "projector", "tools"}  # admin is a super user
    writes = {p: {r.name for r in rules if r.principal == p and r.operation == "WRITE"}
              for p in ("decider", "projector", "tools")}
    assert writes == {"decider": {"t.ledger", "t.rej", "t.dlq"}, "projector": set(), "tools": {"t.events"}}
    assert ("decider", "READ", "TOPIC", "LITERAL", "t.events") in by
    assert ("decider", "READ", "GROUP", "LITERAL", "grp-decider") in by
    assert ("projector", "READ", "GROUP", "LITERAL", "grp-projector") in by
    assert not [r for r in rules if r.operation in ("CREATE", "DELETE", "ALTER", "ALTER_CONFIGS", "ALL")
                or r.resource_type == "CLUSTER"]
    for rule in rules:
        security_policy.acl_binding(rule)  # every line names a real operation, resource and pattern type


def test_kafka_acls_grant_each_role_what_its_code_needs_like_the_kubernetes_users(values):
    """The local policy and the KafkaUsers are held to one expectation derived from the code
    (tests/support/kafka_acls.py): a grant missing here fails a command only on the secure profile."""
    settings = Settings(events_topic="t.events", ledger_topic="t.ledger", rejections_topic="t.rej",
                        dlq_topic="t.dlq", consumer_group="grp")
    pattern = {"LITERAL": "literal", "PREFIXED": "prefix"}
    granted: dict[str, set] = {}
    for r in security_policy.kafka_acls(values):
        op = "".join(word.capitalize() for word in r.operation.split("_"))
        granted.setdefault(r.principal, set()).add((r.resource_type.lower(), r.name, pattern[r.pattern_type], op))
    for role, wanted in expected_kafka_acls(settings).items():
        if role == "topics-check":  # a Kubernetes Job's own login; locally `ledger topics diff` runs as tools
            continue
        got, want = with_implied(granted[role]), with_implied(wanted)
        assert got == want, f"{role}: missing {sorted(want - got)}, extra {sorted(got - want)}"


def test_cassandra_roles_grant_no_drop_alter_or_role_management(values):
    statements = security_policy.cassandra_statements(values)
    creates = [s for s in statements if s.startswith("CREATE ROLE")]
    assert [s.split()[5] for s in creates] == ["decider", "projector", "api", "tools"]
    assert all(f"PASSWORD = 'pw-of-{s.split()[5]}'" in s for s in creates)
    grants = {tuple(s.split()[i] for i in (1, 4, 6)) for s in statements if s.startswith("GRANT")}
    assert grants == {("SELECT", "ks", "decider"), ("MODIFY", "ks", "decider"),
                      ("SELECT", "ks", "projector"), ("MODIFY", "ks", "projector"),
                      ("SELECT", "ks", "api"),
                      ("SELECT", "ks", "tools"), ("MODIFY", "ks", "tools"), ("CREATE", "ks", "tools")}


def test_the_redis_aclfile_holds_digests_not_passwords(values):
    text = security_policy.redis_aclfile(values)
    for principal, secret in PASSWORDS.items():
        assert secret not in text
        assert f"user {principal} on #{hashlib.sha256(secret.encode()).hexdigest()} " in text
    lines = {line.split()[1]: line for line in text.splitlines()}
    assert lines["default"].startswith("user default off")
    assert "+@write" not in lines["api"] and "-@dangerous" in lines["api"] and "~ledger:*" in lines["api"]
    assert "-@dangerous" in lines["tools"]
    for worker in ("decider", "projector"):
        rules = lines[worker].split()
        assert "-@all" in rules and "~ledger:*" in rules and not [r for r in rules if r.startswith("+@")]


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stack") / ".stack-secure"
    tls.ensure(root / "tls")
    credentials.ensure_passwords(root)
    return root


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_certificates_are_made_once_for_loopback_and_the_keys_are_private(stack_dir):
    files = secure_profile.tls_files(stack_dir)
    assert tls.ensure(stack_dir / "tls") == (files, False)
    text = subprocess.run(["openssl", "x509", "-in", str(files.cert), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text
    subprocess.run(["openssl", "verify", "-CAfile", str(files.ca), str(files.cert)], check=True, capture_output=True)
    for private in (files.key, files.ca_key, files.keystore, files.keystore_password_file):
        assert _mode(private) == 0o600, private


def test_each_principal_has_its_own_private_password_made_once(stack_dir):
    assert credentials.ensure_passwords(stack_dir) == []
    secrets = credentials.passwords(stack_dir)
    assert len(set(secrets.values())) == len(credentials.PRINCIPALS)
    assert all(len(s) >= 24 for s in secrets.values())
    assert all(_mode(credentials.password_file(stack_dir, p)) == 0o600 for p in credentials.PRINCIPALS)
    assert _mode(credentials.secrets_dir(stack_dir)) == 0o700


def test_redis_listens_on_tls_only_with_the_rendered_users(stack_dir):
    redis = SecureRedis(stack_dir)
    redis.prepare()
    conf = redis.config_file.read_text()
    assert "\nport 0\n" in conf and "\ntls-port 6380\n" in conf and f"aclfile {redis.acl_file}" in conf
    assert _mode(redis.acl_file) == 0o600
    assert credentials.password(stack_dir, "api") not in redis.acl_file.read_text()


def test_kafka_authenticates_every_client_and_authorizes_by_acl(stack_dir):
    props = dict(line.split("=", 1) for line in SecureKafka(stack_dir).config_text().splitlines()
                 if line and not line.startswith("#"))
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SSL,SASL_SSL:SASL_SSL"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:CN=localhost"
    assert "{" not in "".join(v for k, v in props.items() if not k.endswith("jaas.config"))


def test_cassandra_requires_a_login_and_tls(stack_dir):
    import yaml

    conf = yaml.safe_load(SecureCassandra(stack_dir).config_text())
    assert conf["authenticator"] == "PasswordAuthenticator"
    assert conf["authorizer"] == "CassandraAuthorizer"
    assert conf["role_manager"] == "CassandraRoleManager"
    assert conf["native_transport_port"] == 9142 and conf["storage_port"] == 7100
    assert conf["client_encryption_options"]["enabled"] is True
    assert conf["client_encryption_options"]["optional"] is False
    assert conf["client_encryption_options"]["store_type"] == "PKCS12"


ENV = ["LEDGER_STACK_DIR", "LEDGER_KAFKA_BOOTSTRAP", "LEDGER_KAFKA_SECURITY_PROTOCOL", "LEDGER_KAFKA_SASL_MECHANISM",
       "LEDGER_KAFKA_SASL_USERNAME", "LEDGER_KAFKA_SASL_PASSWORD_FILE", "LEDGER_KAFKA_SSL_CA_FILE",
       "LEDGER_CASSANDRA_HOSTS", "LEDGER_CASSANDRA_PORT", "LEDGER_CASSANDRA_USERNAME",
       "LEDGER_CASSANDRA_PASSWORD_FILE", "LEDGER_CASSANDRA_SSL_CA_FILE", "LEDGER_REDIS_URL", "LEDGER_REDIS_USERNAME",
       "LEDGER_REDIS_PASSWORD_FILE", "LEDGER_REDIS_SSL_CA_FILE"]


def test_env_names_exactly_the_client_settings_and_no_password(stack_dir):
    env = secure_profile.client_env(stack_dir, "decider")
    assert sorted(env) == sorted(ENV)
    assert env["LEDGER_KAFKA_BOOTSTRAP"] == "127.0.0.1:9192" and env["LEDGER_REDIS_URL"] == "rediss://127.0.0.1:6380/0"
    assert env["LEDGER_KAFKA_SASL_USERNAME"] == env["LEDGER_CASSANDRA_USERNAME"] == "decider"
    assert all(secret not in " ".join(env.values()) for secret in credentials.passwords(stack_dir).values())
    assert sorted(secure_profile.client_env(stack_dir, "api")) == sorted(k for k in ENV if "KAFKA" not in k)


def test_the_settings_read_the_env_of_each_principal(stack_dir):
    from app.config import Settings

    settings = Settings(**{k.removeprefix("LEDGER_").lower(): v
                           for k, v in secure_profile.client_env(stack_dir, "tools").items()})
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_username == "tools"
    assert settings.cassandra_port == 9142


def test_the_secure_folder_is_found_from_the_local_one_and_from_itself(tmp_path):
    local = tmp_path / ".stack"
    secure = manager.stack_dir_of(local, "secure")
    assert secure == tmp_path / ".stack-secure" and manager.profile_of(secure) == "secure"
    assert manager.stack_dir_of(secure, "secure") == secure  # LEDGER_STACK_DIR as `stack env` sets it
    assert manager.stack_dir_of(secure, "local") == local
    assert [s.name for s in manager.services(secure)] == ["redis", "kafka", "cassandra"]
    assert [s.port for s in manager.services(secure)] == [6380, 9192, 9142]
