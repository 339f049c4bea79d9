"""The node-loss harness of tests/cluster: events published at a steady pace, two workers, the read
API in a process of its own probed without pause, one node SIGKILLed mid-stream and started again.

What it measures (printed by each test, and written to ``<tmp>/node-loss.json``):
- the API: requests, errors (anything but 200), and the longest time a probed member went without
  a 200 (a member's key lives on one Redis master, so the gap is per member);
- the node: how long it took to answer again after its restart;
- catch-up: from the last publish to every view at its expected seq."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from app.config import REPO_ROOT
from tests.support.helpers import wait_until
from tools.stack.process import free_port

TOKEN = "node-loss-token"


@dataclass
class ApiProbe:
    """GET /v1/members/{m} for each probed member in turn, every ``interval`` seconds, each request
    bounded by ``timeout``."""

    port: int
    members: list[str]
    interval: float = 0.05
    timeout: float = 2.0
    requests: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    last_ok: dict[str, float] = field(default_factory=dict)
    longest_gap: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        now = time.monotonic()
        for m, t in self.last_ok.items():  # a member still failing at the end counts to now
            self.longest_gap[m] = max(self.longest_gap.get(m, 0.0), now - t)
        return {"requests": self.requests, "errors": self.errors, "error_kinds": self.error_kinds,
                "longest_gap_s": round(max(self.longest_gap.values(), default=0.0), 2)}

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            member = self.members[i % len(self.members)]
            i += 1
            status = self._get(member)
            now = time.monotonic()
            self.requests += 1
            if status == "200":
                if member in self.last_ok:
                    self.longest_gap[member] = max(self.longest_gap.get(member, 0.0), now - self.last_ok[member])
                self.last_ok[member] = now
            else:
                self.errors += 1
                self.error_kinds[status] = self.error_kinds.get(status, 0) + 1
            self._stop.wait(self.interval)

    def _get(self, member: str) -> str:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/members/{member}",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return str(response.status)
        except urllib.error.HTTPError as exc:
            return str(exc.code)
        except (urllib.error.URLError, OSError) as exc:
            return type(exc).__name__


class ApiProcess:
    """`ledger api` on a free port with the pipeline's settings."""

    def __init__(self, env: dict[str, str], log: Path):
        self.port = free_port()
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "api", "--port", str(self.port)], cwd=REPO_ROOT,
            env={**os.environ, **env, "LEDGER_API_TOKENS": TOKEN}, stdout=open(log, "wb"), stderr=subprocess.STDOUT)

        def healthy():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False
        wait_until(healthy, 60, interval=0.2, message="the API to answer")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def publish_paced(pipeline, events, chunks: int, pause_s: float, done: threading.Event, failures: list) -> None:
    """Publish ``events`` in ``chunks`` parts, ``pause_s`` apart (the publisher waits for acks=all)."""
    try:
        size = -(-len(events) // chunks)
        for i in range(0, len(events), size):
            pipeline.publish(events[i:i + size])
            time.sleep(pause_s)
    except Exception as exc:  # reported by the test
        failures.append(exc)
    finally:
        done.set()


def report(tmp: Path, name: str, figures: dict) -> None:
    path = tmp / "node-loss.json"
    path.write_text(json.dumps(figures, indent=2))
    print(f"\nnode loss [{name}]: {json.dumps(figures)}")
    summary = os.environ.get("LEDGER_NODE_LOSS_REPORT")
    if summary:  # make test-cluster collects every test's figures in one file
        with open(summary, "a") as f:
            f.write(json.dumps({"test": name, **figures}) + "\n")
