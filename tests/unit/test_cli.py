"""The CLI's promise: an error of the environment is one line on stderr and a non-zero exit."""
from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from app.entrypoints import cli
from app.entrypoints.commands import topics_cmd


@pytest.mark.parametrize("error", [
    KafkaException(KafkaError(KafkaError.NOT_COORDINATOR)),
    ConnectionRefusedError(111, "Connection refused"),
    TimeoutError("timed out"),
])
def test_an_environment_error_is_one_line_and_exit_1(monkeypatch, capsys, error):
    def handler(args, settings):
        raise error

    monkeypatch.setattr(topics_cmd, "run", handler)
    assert cli.main(["topics", "diff"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ledger topics: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_a_bug_is_not_hidden(monkeypatch):
    def handler(args, settings):
        raise KeyError("a bug")

    monkeypatch.setattr(topics_cmd, "run", handler)
    with pytest.raises(KeyError):
        cli.main(["topics", "diff"])


def test_an_invalid_setting_is_one_line_naming_the_variable_not_its_value(monkeypatch, capsys):
    monkeypatch.setenv("LEDGER_API_METRICS_PORT", "not-a-port-5ecret")
    monkeypatch.setenv("LEDGER_API_MAX_BODY_BYTES", "0")
    assert cli.main(["api"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "5ecret" not in err
    assert err.startswith("ledger api: invalid settings: LEDGER_API_METRICS_PORT: ")
    assert "LEDGER_API_MAX_BODY_BYTES: Input should be greater than or equal to 1" in err


@pytest.mark.parametrize("partitions, flags, status", [
    (12, [], 0), (12, ["--exit-code"], 0),      # no drift
    (6, [], 0), (6, ["--exit-code"], 2),        # drift: partitions to raise
    (24, ["--exit-code"], 1),                   # refused (lowering) stays 1
])
def test_topics_diff_exit_code_reports_drift(monkeypatch, capsys, partitions, flags, status):
    from app import bootstrap
    from app.adapters.kafka import topic_admin
    from app.adapters.kafka.topic_spec import ActualTopic, load_specs
    from app.config import REPO_ROOT

    def describe(admin, names):
        specs = {s.name: s for s in load_specs(REPO_ROOT / "topics", "local")}
        return {n: ActualTopic(n, partitions, specs[n].config) for n in names}

    monkeypatch.setattr(bootstrap, "kafka_admin", lambda settings: object())
    monkeypatch.setattr(topic_admin, "describe", describe)
    monkeypatch.setenv("LEDGER_ENVIRONMENT", "local")
    assert cli.main(["topics", "diff", *flags]) == status


@pytest.mark.parametrize("env, named", [
    ({"LEDGER_BATCH_SIZE": "many"}, "LEDGER_BATCH_SIZE"),
    ({"LEDGER_CASSANDRA_PASSWORD_FILE": "/nonexistent/password"}, "LEDGER_CASSANDRA_PASSWORD_FILE"),
])
def test_a_bad_setting_is_one_line_naming_it_and_never_a_secret(monkeypatch, capsys, env, named):
    monkeypatch.setenv("LEDGER_REDIS_PASSWORD", "topsecret-value")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["topics", "diff"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ledger topics: invalid settings: ") and err.count("\n") == 1
    assert named in err
    assert "topsecret-value" not in err and "Traceback" not in err
