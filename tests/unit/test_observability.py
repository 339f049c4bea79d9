"""The dashboard and the alert rules under deploy/observability/: the dashboard is what its generator
writes, the rules pass their promtool tests, and every alert has a runbook in the README."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from app.config import REPO_ROOT
from tests.support.observability import (
    PROMETHEUS_CONFIG,
    RULES,
    RULES_TEST,
    alert_rules,
    dashboard_expressions,
    referenced_metric_names,
)
from tools.observability import dashboard


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: `make tools` installs Debian's prometheus package, which ships it")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus, or `make tools`); "
                    "CI runs this test")
    return found


def test_the_checked_in_dashboard_is_what_the_generator_writes():
    assert dashboard.OUTPUT.read_text() == dashboard.render(), \
        "run `python -m tools.observability.dashboard` and commit deploy/observability/grafana/"


def test_the_dashboard_shows_what_an_operator_needs():
    exprs = "\n".join(dashboard_expressions())
    for needed in ("ledger_decider_events_total", "ledger_decider_rejections_total", "ledger_decider_dead_letters_total",
                   "ledger_consumer_lag_seconds", "ledger_batch_seconds_bucket", "ledger_api_requests_total",
                   "ledger_api_request_duration_seconds_bucket"):
        assert needed in exprs
    assert {"ledger_consumer_group_members", "ledger_consumer_lag_messages"} <= referenced_metric_names()


def test_the_alert_rules_pass_their_promtool_tests():
    promtool = _promtool()
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", RULES_TEST.name], cwd=RULES_TEST.parent,
                            capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = subprocess.run([promtool, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True,
                            timeout=60)
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_is_tested_and_has_a_runbook_in_the_readme():
    readme = (REPO_ROOT / "README.md").read_text()
    tests = RULES_TEST.read_text()
    headings = {m.lower() for m in re.findall(r"^#+ `?(\w+)`?\s*$", readme, flags=re.M)}
    for rule in alert_rules():
        name = rule["alert"]
        assert f"alertname: {name}\n" in tests, f"{name} has no promtool test"
        assert name.lower() in headings, f"{name} has no runbook heading in README.md"
        assert rule["annotations"]["runbook"] == f"README.md#{name.lower()}"
