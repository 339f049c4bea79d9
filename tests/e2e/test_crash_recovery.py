"""Workers killed with SIGKILL at random points, and a worker lost from a group of two: the result
equals an uninterrupted run (checked against the pure domain's decisions)."""
from __future__ import annotations

import random
import time
import uuid

from tests.support.helpers import wait_until
from tests.support.pipeline import assert_exact_outputs
from tests.support.random_history import random_history


def _processed_so_far(pipeline) -> int:
    rows = pipeline.cassandra.execute(
        f"SELECT next_offset FROM {pipeline.settings.cassandra_keyspace}.decider_progress WHERE topic = %s",
        (pipeline.settings.events_topic,))
    return sum(r.next_offset for r in rows)


def test_a_worker_killed_mid_batch_several_times_ends_with_the_same_views(pipeline):
    events = random_history(uuid.uuid4().hex[:6], members=60, events=4000)
    rng = random.Random(11)
    pipeline.publish(events)
    worker = pipeline.start_worker()
    kills = 0
    while kills < 4:
        done = _processed_so_far(pipeline)
        if done >= len(events):
            break
        # wait until it makes progress, then kill it at a random moment inside the next batches
        wait_until(lambda: _processed_so_far(pipeline) > done, 90, interval=0.05, message="decider progress")
        time.sleep(rng.uniform(0.0, 0.3))  # a random kill point, not a wait for a condition
        worker.kill()
        kills += 1
        worker = pipeline.start_worker()
    assert kills >= 2, "the workload finished before the worker could be killed twice"
    assert_exact_outputs(pipeline, events)


def test_two_workers_then_one_killed_the_survivor_takes_over(pipeline):
    events = random_history(uuid.uuid4().hex[:6], members=60, events=3000, seed=3)
    first, second = pipeline.start_worker(), pipeline.start_worker()
    half = len(events) // 2
    pipeline.publish(events[:half])
    wait_until(lambda: _processed_so_far(pipeline) >= half, 120, interval=0.2, message="first half processed")
    second.kill()
    pipeline.publish(events[half:])
    assert_exact_outputs(pipeline, events)
    assert first.alive
