"""`ledger history` and `ledger whatif` fail with one line and exit 1, before or without any store.

(Their output against the real stack is tested in tests/e2e/test_timeline.py.) The commands run from
the checkout (`python -m app` in the current directory), so files are passed by absolute path."""
from __future__ import annotations

import pytest

from tests.support.helpers import ledger

NO_CASSANDRA = {"LEDGER_CASSANDRA_PORT": "1"}  # nothing listens on port 1


def one_line_failure(result, *fragments: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_a_bad_policy_file_is_one_line_naming_the_place(tmp_path):
    (tmp_path / "p.yaml").write_text("plans:\n  basic: {device_limit: 0, monthly: 3}\n")
    line = one_line_failure(ledger("whatif", "--policy", str(tmp_path / "p.yaml"), env=NO_CASSANDRA),
                            "ledger whatif:", "p.yaml", "plans.basic.device_limit", "plans.basic.monthly: unknown key")
    assert "Cassandra" not in line  # the policy is checked before anything is opened


@pytest.mark.parametrize("args, fragment", [
    (["history", "bad id"], "not a member id"),
    (["history", "m1", "--limit", "-1"], "--limit must be >= 0"),
    (["whatif", "--policy", "{p}", "--member", "bad id"], "not a member id"),
    (["whatif", "--policy", "{p}", "--from", "10", "--to", "10"], "--to must be after --from"),
    (["whatif", "--policy", "{p}", "--sample", "0"], "--sample must be at least 1"),
    (["whatif", "--policy", "{tmp}/missing.yaml"], "cannot read"),
    (["whatif", "--policy", "{p}", "--members-file", "{tmp}/missing.txt"], "missing.txt: No such file"),
])
def test_bad_arguments_are_one_line(tmp_path, args, fragment):
    (tmp_path / "p.yaml").write_text("{}\n")
    args = [a.format(p=tmp_path / "p.yaml", tmp=tmp_path) for a in args]
    one_line_failure(ledger(*args, env=NO_CASSANDRA), fragment)


@pytest.mark.parametrize("args", [["history", "m1"], ["history", "m1", "--json"],
                                  ["whatif", "--policy", "{p}"], ["whatif", "--policy", "{p}", "--member", "m1"]])
def test_cassandra_down_is_one_line(tmp_path, args):
    (tmp_path / "p.yaml").write_text("{}\n")
    args = [a.format(p=tmp_path / "p.yaml") for a in args]
    one_line_failure(ledger(*args, env=NO_CASSANDRA), f"ledger {args[0]}: cannot read the event store")
