"""A stop that stops, and a projector that commits only what it applied.

Redis is replaced by a peer that accepts connections and never answers (a frozen or partitioned
Redis): the projector's batches fail on their timeout and are retried. SIGTERM must end the worker
within LEDGER_STOP_TIMEOUT_S, and whatever Faust acknowledged on the way out, a worker started
later with the real Redis must still apply every ledger entry.
"""
from __future__ import annotations

import uuid

from tests.support.blackhole import Blackhole
from tests.support.helpers import wait_until
from tests.support.pipeline import expected_states, scripted_history

STOP_TIMEOUT_S = 30


def test_sigterm_while_the_projector_retries_stops_in_time_and_loses_no_entry(pipeline):
    events = scripted_history(uuid.uuid4().hex[:6])
    expected, _ = expected_states(events)
    with Blackhole() as frozen_redis:
        worker = pipeline.start_worker(LEDGER_REDIS_URL=f"redis://127.0.0.1:{frozen_redis.port}/0",
                                       LEDGER_STOP_TIMEOUT_S=str(STOP_TIMEOUT_S))
        pipeline.publish(events)
        wait_until(lambda: "projector batch" in worker.log_text() and "failed" in worker.log_text(), 120,
                   message="the projector failing against the frozen Redis")
        took = worker.terminate_within(STOP_TIMEOUT_S + 10)
    assert took is not None, "the worker ignored SIGTERM: " + worker.log_text()[-2000:]
    assert took <= STOP_TIMEOUT_S + 5

    pipeline.start_worker()
    pipeline.wait_for_views(expected, timeout=120)
