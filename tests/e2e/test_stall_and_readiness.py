"""A worker that cannot make progress says so on its metrics port; one that can is ready.

Redis is replaced by a peer that accepts connections and never answers: the projector's batches
time out and are retried. Once a batch has been in flight for LEDGER_STALL_TIMEOUT_S, /readyz
answers 503 naming the projector and ``ledger_worker_stalled{stage="projector"}`` is 1, while the
decider (Kafka and Cassandra only) is not stalled. A worker against the real Redis applies every
entry and is ready, with no stage stalled.
"""
from __future__ import annotations

import uuid

from tests.support.blackhole import Blackhole
from tests.support.helpers import http_get, metric, readiness, wait_until
from tests.support.pipeline import expected_states, scripted_history
from tools.stack.process import free_port

STALL_TIMEOUT_S = 5


def stalled(port: int, stage: str) -> float | None:
    return metric(port, f'ledger_worker_stalled{{stage="{stage}"}}')


def test_a_projector_that_cannot_write_is_reported_stalled_and_not_ready(pipeline):
    events = scripted_history(uuid.uuid4().hex[:6])
    expected, _ = expected_states(events)
    with Blackhole() as frozen_redis:
        port = free_port()
        worker = pipeline.start_worker(metrics_port=port,
                                       LEDGER_REDIS_URL=f"redis://127.0.0.1:{frozen_redis.port}/0",
                                       LEDGER_STALL_TIMEOUT_S=str(STALL_TIMEOUT_S), LEDGER_STOP_TIMEOUT_S="5")
        wait_until(lambda: http_get(port, "/healthz") is not None, 60, message="the worker's metrics port")
        pipeline.publish(events)

        # Redis calls time out after as long as the stall timeout: the batch is reported stalled
        # about when its first attempt fails, so wait for both rather than read one moment.
        def projector_stalled_and_retrying():
            got = readiness(port)
            return (got is not None and got[0] == 503 and got[1]["reason"] == "stalled"
                    and got[1]["stages"]["projector"]["failed_attempts"] >= 1 and got[1])
        body = wait_until(projector_stalled_and_retrying, 120, interval=0.5,
                          message="/readyz to report the projector stalled after a failed attempt")
        assert body["stages"]["projector"]["stalled"] is True, body
        assert body["stages"]["projector"]["last_error"], body
        assert stalled(port, "projector") == 1
        assert stalled(port, "decider") == 0  # the decider does not need Redis: it is progressing
        assert http_get(port, "/healthz")[0] == 200  # stalled, not dead
        assert worker.alive
        worker.terminate_within(30)

    port = free_port()
    pipeline.start_worker(metrics_port=port, LEDGER_STALL_TIMEOUT_S=str(STALL_TIMEOUT_S))
    pipeline.wait_for_views(expected, timeout=120)
    ready = wait_until(lambda: (got := readiness(port)) is not None and got[0] == 200 and got[1], 60,
                       interval=0.5, message="/readyz of the worker against the real Redis")
    assert ready["ready"] is True, ready
    assert stalled(port, "projector") == 0 and stalled(port, "decider") == 0
    assert metric(port, 'ledger_last_progress_timestamp_seconds{stage="projector"}') > 0
