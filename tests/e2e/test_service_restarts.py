"""A restart of Redis under a running worker ends with the same views as an uninterrupted run:
the projector's failed batches are retried (unacknowledged, fenced) until Redis answers again."""
from __future__ import annotations

import uuid

import redis

from app.bootstrap import redis_sync_client
from app.config import REPO_ROOT
from tests.support.helpers import wait_until
from tests.support.pipeline import assert_exact_outputs, expected_states
from tests.support.random_history import random_history
from tools.stack import manager


def _pings(settings) -> bool:
    try:
        return redis_sync_client(settings, timeout_s=1).ping()
    except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
        return False


def test_a_redis_crash_and_restart_mid_stream_loses_nothing(pipeline, settings):
    events = random_history(uuid.uuid4().hex[:6], members=40, events=2000, seed=9)
    half = len(events) // 2
    worker = pipeline.start_worker()
    pipeline.publish(events[:half])
    pipeline.wait_for_views(expected_states(events[:half])[0])

    server = manager.service_named(settings.stack_dir, "redis")
    assert server.process.pid() is not None, "the stack's redis is not running"
    server.process.kill()
    pipeline.publish(events[half:])  # decided while the views cannot be written
    server.process.start(server.argv(), cwd=REPO_ROOT)
    wait_until(lambda: _pings(pipeline.settings), 60, interval=0.2, message="redis to answer again")

    assert_exact_outputs(pipeline, events)
    assert worker.alive
