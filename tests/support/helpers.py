"""Helpers shared by the integration and end-to-end tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    """Polls ``predicate`` until it returns a truthy value; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


def ledger(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)




def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str] | None:
    """(status, body) of a GET on 127.0.0.1:port, whatever the status; None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def readiness(port: int) -> tuple[int, dict] | None:
    """(status, JSON body) of a worker's /readyz; None while it does not answer."""
    got = http_get(port, "/readyz")
    return None if got is None else (got[0], json.loads(got[1]))


def metric(port: int, sample: str) -> float | None:
    """The value of one sample (``name{labels}`` as exposed) on a worker's /metrics."""
    got = http_get(port, "/metrics")
    if got is None or got[0] != 200:
        return None
    for line in got[1].splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def scrape(port: int, path: str = "/metrics") -> str:
    """The Prometheus text a process serves on 127.0.0.1:port ("" while it does not answer)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return ""
