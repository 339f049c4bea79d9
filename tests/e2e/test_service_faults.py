"""Service faults under a running worker: Kafka stopped and restarted, Cassandra killed and
restarted, Cassandra frozen for 20 s, each mid-stream. The worker recovers by itself and the
outputs equal the pure domain's. Faults go through `ledger stack`, as an operator's drill would.

These tests stop services of the shared local stack: they restore them before they end (and a
fixture restores them if a test fails half-way).
"""
from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from app.config import REPO_ROOT
from tests.support.pipeline import assert_exact_outputs, expected_states
from tests.support.random_history import random_history


def stack(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "app", "stack", *args], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def restore_stack():
    yield
    subprocess.run([sys.executable, "-m", "app", "stack", "thaw", "cassandra"], cwd=REPO_ROOT, capture_output=True)
    stack("up")


def _run_with_fault(pipeline, fault, seed: int) -> None:
    events = random_history(uuid.uuid4().hex[:6], members=40, events=1600, seed=seed)
    half = len(events) // 2
    worker = pipeline.start_worker()
    pipeline.publish(events[:half])
    pipeline.wait_for_views(expected_states(events[:half])[0])
    fault(lambda: pipeline.publish(events[half:]))
    assert_exact_outputs(pipeline, events)
    assert worker.alive, worker.log_text()[-3000:]


def test_kafka_stopped_and_restarted_mid_stream_loses_nothing(pipeline, restore_stack):
    def fault(publish_rest):
        stack("stop", "kafka")
        time.sleep(5)  # the worker runs without its broker for a while (a fault drill, not a wait)
        stack("start", "kafka")
        publish_rest()
    _run_with_fault(pipeline, fault, seed=21)


def test_cassandra_killed_and_restarted_mid_stream_loses_nothing(pipeline, restore_stack):
    def fault(publish_rest):
        publish_rest()  # decided while Cassandra goes down
        stack("kill", "cassandra")
        stack("start", "cassandra")
    _run_with_fault(pipeline, fault, seed=22)


def test_cassandra_frozen_for_20_seconds_mid_stream_loses_nothing(pipeline, restore_stack):
    def fault(publish_rest):
        stack("freeze", "cassandra")
        publish_rest()
        time.sleep(20)  # the fault's length is the test's subject
        stack("thaw", "cassandra")
    _run_with_fault(pipeline, fault, seed=23)
