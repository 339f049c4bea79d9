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
