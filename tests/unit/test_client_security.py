"""The client side of security: each setting reaches every client library's configuration, secrets
are read from files once, and no password shows in a repr, a description or an error."""
from __future__ import annotations

import os
import ssl
import subprocess

import pytest
from pydantic import ValidationError

from app import bootstrap
from app.adapters.cassandra import session as cassandra_session
from app.adapters.kafka.connection import KafkaConnection
from app.config import Settings
from app.entrypoints.worker.faust_app import faust_credentials

SECRET = "s3cr3t-Value-42"


@pytest.fixture(autouse=True)
def no_ledger_environment(monkeypatch):
    """Only what a test gives: `make test` runs with the secure profile's LEDGER_* variables set."""
    for name in [n for n in os.environ if n.startswith("LEDGER_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "password"
    path.write_text(SECRET + "\n")
    return path


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test-ca", "-days", "1",
                    "-keyout", str(folder / "ca.key"), "-out", str(folder / "ca.pem")], check=True, capture_output=True)
    return folder / "ca.pem"


@pytest.fixture
def secured(secret_file, ca_file):
    return lambda **extra: _secured(secret_file, ca_file, **extra)


def _secured(secret_file, ca, **extra) -> Settings:
    return Settings(_env_file=None, **{
        "kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "decider",
        "kafka_sasl_password_file": secret_file, "kafka_ssl_ca_file": ca,
        "cassandra_username": "decider", "cassandra_password_file": secret_file,
        "redis_url": "rediss://127.0.0.1:6380/0", "redis_username": "decider", "redis_password_file": secret_file,
        "redis_ssl_ca_file": ca, **extra})


def test_passwords_are_read_from_their_files_once_at_start(secured, secret_file):
    settings = secured()
    secret_file.write_text("changed later")
    for name in ("kafka_sasl_password", "cassandra_password", "redis_password"):
        assert getattr(settings, name).get_secret_value() == SECRET


def test_a_password_given_directly_wins_over_its_file(secured, ca_file):
    settings = secured(redis_password="direct")
    assert settings.redis_password.get_secret_value() == "direct"


def test_an_unreadable_password_file_is_named_and_nothing_else(tmp_path):
    with pytest.raises(ValidationError) as failed:
        Settings(_env_file=None, cassandra_password_file=tmp_path / "missing")
    assert "LEDGER_CASSANDRA_PASSWORD_FILE" in str(failed.value)
    assert str(tmp_path / "missing") in str(failed.value)


def test_librdkafka_gets_the_protocol_the_login_and_the_ca(secured, ca_file):
    conf = bootstrap.kafka_connection(secured()).librdkafka()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("decider", SECRET)
    assert conf["ssl.ca.location"] == str(ca_file)


def test_a_plaintext_connection_configures_nothing_but_the_brokers():
    assert KafkaConnection("b:9092").librdkafka() == {"bootstrap.servers": "b:9092", "security.protocol": "PLAINTEXT"}


def test_sasl_without_a_password_is_refused_at_start():
    with pytest.raises(ValueError, match="LEDGER_KAFKA_SASL_USERNAME"):
        KafkaConnection("b:9092", "SASL_SSL", username="decider")


def test_faust_gets_sasl_over_tls_with_the_same_login(secured, ca_file):
    credentials = faust_credentials(bootstrap.kafka_connection(secured()))
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("decider", SECRET)
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert credentials.ssl_context.check_hostname


def test_faust_gets_no_credentials_for_plaintext():
    assert faust_credentials(KafkaConnection("b:9092")) is None


def test_cassandra_gets_a_login_and_tls(secured, ca_file):
    settings = secured(cassandra_ssl_ca_file=ca_file)
    provider = cassandra_session.auth_provider(settings)
    assert (provider.username, provider.password) == ("decider", SECRET)
    context = cassandra_session.tls_context(settings)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_cassandra_may_check_the_ca_alone(secured, ca_file):
    context = cassandra_session.tls_context(secured(cassandra_ssl_ca_file=ca_file, cassandra_ssl_check_hostname=False))
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname


def test_cassandra_without_settings_is_anonymous_and_plaintext():
    settings = Settings(_env_file=None)
    assert cassandra_session.auth_provider(settings) is None
    assert cassandra_session.tls_context(settings) is None


def test_redis_gets_the_acl_user_and_tls(secured, ca_file):
    settings = secured()
    options = bootstrap.redis_security(settings)
    assert (options["username"], options["password"]) == ("decider", SECRET)
    assert options["ssl_ca_certs"] == str(ca_file)
    client = bootstrap.redis_sync_client(settings)
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert (kwargs["username"], kwargs["password"]) == ("decider", SECRET)


def test_a_tls_redis_cluster_url_names_its_nodes():
    settings = Settings(_env_file=None, redis_url="rediss+cluster://10.0.0.1:7000,10.0.0.2:7001")
    assert settings.redis_tls
    assert settings.redis_cluster_nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]


def test_no_password_in_any_repr_or_description(secured, ca_file):
    settings = secured()
    connection = bootstrap.kafka_connection(settings)
    for text in (repr(settings), str(settings), repr(connection), connection.describe(),
                 repr(faust_credentials(connection)), settings.model_dump_json()):
        assert SECRET not in text
