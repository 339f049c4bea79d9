"""A worker that cannot make progress says so: the stall gauges, /readyz, /healthz and /metrics."""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY

from app.entrypoints.worker.faust_app import _until_done
from app.observability import WorkerHealth, serve_worker_http
from app.service.retry import Backoff


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def health(stages=("decider", "projector"), stall_timeout_s=120.0):
    clock = Clock()
    return WorkerHealth(stages, stall_timeout_s, clock=clock, wall_clock=lambda: 1_700_000_000 + clock.now), clock


def gauge(name: str, stage: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"stage": stage})


def test_not_ready_until_the_first_assignment_then_ready():
    h, _ = health()
    ready, body = h.readiness()
    assert not ready and body["reason"] == "not_assigned"
    h.assigned()
    ready, body = h.readiness()
    assert ready and body["ready"] is True


def test_a_batch_failing_for_longer_than_the_stall_timeout_stalls_its_stage_until_it_is_done():
    h, clock = health(stall_timeout_s=120)
    h.assigned()
    h.batch_started("projector")
    h.batch_failed("projector", TimeoutError("Timeout reading from socket"))
    clock.now += 119
    assert not h.stalled("projector") and h.readiness()[0]
    assert gauge("ledger_worker_stalled", "projector") == 0
    clock.now += 2
    h.batch_failed("projector", TimeoutError("Timeout reading from socket"))
    assert h.stalled("projector") and not h.stalled("decider")
    assert gauge("ledger_worker_stalled", "projector") == 1
    assert gauge("ledger_worker_stalled", "decider") == 0
    ready, body = h.readiness()
    assert not ready and body["reason"] == "stalled"
    assert body["stages"]["projector"]["stalled"] is True
    assert body["stages"]["projector"]["failed_attempts"] == 2
    assert "Timeout reading from socket" in body["stages"]["projector"]["last_error"]
    assert "projector" in body["detail"]

    clock.now += 5
    h.batch_finished("projector", ok=True)
    assert not h.stalled("projector") and h.readiness()[0]
    assert gauge("ledger_worker_stalled", "projector") == 0
    assert gauge("ledger_last_progress_timestamp_seconds", "projector") == 1_700_000_000 + clock.now


def test_a_publish_failing_behind_batches_that_finish_stalls_the_decider_until_it_is_done():
    """The decider publishes one batch while it decides the next: the stage is judged by its oldest
    batch in flight, so batches finishing beside a stuck publish do not hide it."""
    h, clock = health(stall_timeout_s=10)
    h.assigned()
    publish = h.batch_started("decider")
    h.batch_failed("decider", TimeoutError("Kafka away"), publish)
    for _ in range(3):
        clock.now += 4
        h.batch_finished("decider", ok=True, token=h.batch_started("decider"))
    assert h.stalled("decider")
    ready, body = h.readiness()
    assert not ready and body["stages"]["decider"]["failed_attempts"] == 1
    assert body["stages"]["decider"]["in_flight_s"] == 12
    h.batch_finished("decider", ok=True, token=publish)
    assert not h.stalled("decider") and h.readiness()[0]


def test_a_batch_that_hangs_without_failing_stalls_too_and_an_idle_stage_never_does():
    h, clock = health(stall_timeout_s=10)
    h.assigned()
    h.batch_started("decider")
    clock.now += 11
    assert h.stalled("decider")  # no failure reported: a call without a timeout would look like this
    assert not h.stalled("projector")  # idle: no batch in flight
    h.batch_finished("decider", ok=False)  # abandoned (the agent was cancelled): not in flight any more
    assert not h.stalled("decider")


def test_the_retry_loop_reports_each_attempt():
    h, _ = health(stages=("decider",))
    attempts = []

    async def process(messages):
        attempts.append(len(messages))
        if len(attempts) < 3:
            raise ConnectionError("store down")
        return "report"

    result = asyncio.run(_until_done("decider", process, [1, 2], h, backoff=Backoff(first_s=0.001, max_s=0.002)))
    assert result == "report" and attempts == [2, 2, 2]
    stage = h.readiness()[1]["stages"]["decider"]
    assert stage["in_flight_s"] is None and stage["failed_attempts"] == 0 and stage["batches"] == 1


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def served():
    h, clock = health(stall_timeout_s=5)
    server = serve_worker_http(h, 0, "127.0.0.1")
    try:
        yield h, clock, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_the_metrics_port_serves_metrics_liveness_and_readiness(served):
    h, clock, port = served
    status, kind, body = get(port, "/metrics")
    assert status == 200 and kind.startswith("text/plain") and 'ledger_worker_stalled{stage="projector"}' in body

    assert get(port, "/healthz")[0] == 200
    status, kind, body = get(port, "/readyz")
    assert (status, kind, json.loads(body)["reason"]) == (503, "application/json", "not_assigned")

    h.assigned()
    assert get(port, "/readyz")[0] == 200
    h.batch_started("projector")
    clock.now += 6
    status, _, body = get(port, "/readyz")
    assert status == 503 and json.loads(body)["reason"] == "stalled"
    assert 'ledger_worker_stalled{stage="projector"} 1.0' in get(port, "/metrics")[2]
    assert get(port, "/healthz")[0] == 200  # stalled is not dead: restarting would not help
    assert get(port, "/nope")[0] == 404
