"""The first minute of a new user, several times over: `ledger stack reset`, then what `make stack-up`
and `make run` do (`stack up`, `topics apply`, `migrate`, `demo`). Right after a reset Kafka's group
coordinator is still loading (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS) and Cassandra has just
opened its port: the demo must show that as "waiting" in its status line, never as a traceback.

It runs the local (plaintext) profile in a stack folder of its own, so that resetting it leaves the
suite's stack alone; the local profile's ports must be free (they are during `make test`, which runs
on the secure profile)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from app.config import REPO_ROOT
from tools.stack import manager
from tools.stack.process import free_port, port_open

RUNS = 3
DEMO_SECONDS = 25
STATUS = re.compile(r"ev/s \| accepted (\d+) \|.* \| lag (.+)$")


def _ledger(env: dict, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _local_env(stack_dir) -> dict:
    """A new user's environment: none of the suite's LEDGER_* settings (secure profile, test topics),
    the local profile in ``stack_dir``, and free ports for the demo's worker metrics and API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_", "OTEL_"))}
    env.update(LEDGER_STACK_DIR=str(stack_dir), LEDGER_METRICS_PORT=str(free_port()),
               LEDGER_API_PORT=str(free_port()))
    return env


def _ok(result: subprocess.CompletedProcess, what: str) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, f"{what} printed a traceback:\n{output[-3000:]}"
    assert result.returncode == 0, f"{what} exited {result.returncode}:\n{output[-3000:]}"
    return output


def test_the_demo_starts_cleanly_on_a_freshly_reset_stack_every_time(tmp_path):
    stack_dir = tmp_path / ".stack"
    busy = [f"{s.name} {s.host}:{s.port}" for s in manager.services(stack_dir) if port_open(s.host, s.port)]
    if busy:
        pytest.skip(f"the local profile's ports are in use ({', '.join(busy)}): stop that stack first")
    env = _local_env(stack_dir)
    try:
        for run in range(1, RUNS + 1):
            _ok(_ledger(env, "stack", "reset", timeout=120), f"run {run}: stack reset")
            _ok(_ledger(env, "stack", "up", timeout=420), f"run {run}: stack up")
            _ok(_ledger(env, "topics", "apply", timeout=120), f"run {run}: topics apply")
            _ok(_ledger(env, "migrate", timeout=180), f"run {run}: migrate")
            output = _ok(_ledger(env, "demo", "--seconds", str(DEMO_SECONDS), "--rate", "200", "--members", "2000",
                                 timeout=DEMO_SECONDS + 120), f"run {run}: demo")
            statuses = [m.groups() for m in map(STATUS.search, output.splitlines()) if m]
            assert statuses, f"run {run}: the demo printed no status line:\n{output[-3000:]}"
            assert int(statuses[-1][0]) > 0, f"run {run}: nothing accepted in {DEMO_SECONDS} s:\n{output[-3000:]}"
            # one lag read that times out shows "waiting for Kafka" for a tick: one of the last two
            # lines, not necessarily the last, must carry the lag
            assert any(lag.strip().isdigit() for _, lag in statuses[-2:]), \
                f"run {run}: the lag was not a number at the end:\n{output[-3000:]}"
    finally:
        _ledger(env, "stack", "down", timeout=180)
