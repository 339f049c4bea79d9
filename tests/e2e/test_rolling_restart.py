"""A rolling restart with static group membership (LEDGER_CONSUMER_GROUP_INSTANCE_ID): each of two
workers is stopped and started again in turn while events flow. A restarted static member rejoins
with its old instance id within the session timeout, so the broker hands it its partitions back and
the other worker is not rebalanced at all; the views end exactly as the pure domain says.

Rebalances are counted from the workers' logs: every assignment a worker receives (one per
rebalance it takes part in) is logged by the worker's ``on_partitions_assigned`` handler."""
from __future__ import annotations

import re
import threading
import time
import uuid

from tests.support.helpers import wait_until
from tests.support.pipeline import assert_exact_outputs
from tests.support.random_history import random_history

ASSIGNED = re.compile(r"partitions assigned: (\d+) \(group (\S+), instance (\S+)\)")
TOPIC_PARTITIONS = 36  # role all: the input, the ledger and the rejections, 12 partitions each
STATIC = {"LEDGER_SESSION_TIMEOUT_S": "45"}  # longer than a restart takes


def assignments(worker) -> list[int]:
    return [int(m.group(1)) for m in ASSIGNED.finditer(worker.log_text())]


def publish_slowly(pipeline, events, chunks: int, pause_s: float, done: threading.Event) -> None:
    size = -(-len(events) // chunks)
    for i in range(0, len(events), size):
        pipeline.publish(events[i:i + size])
        time.sleep(pause_s)
    done.set()


def test_restarting_each_static_member_in_turn_rebalances_no_one_else(pipeline):
    events = random_history(uuid.uuid4().hex[:6], members=60, events=3000, seed=5)
    names = ("w0", "w1")
    workers = {n: pipeline.start_worker(loglevel="info", LEDGER_CONSUMER_GROUP_INSTANCE_ID=n, **STATIC)
               for n in names}

    def settled():
        latest = [assignments(w) for w in workers.values()]
        return all(latest) and sum(a[-1] for a in latest) == TOPIC_PARTITIONS
    wait_until(settled, 90, interval=0.5, message="both workers to share the partitions")
    time.sleep(3)  # no rebalance still in flight
    baseline = {n: len(assignments(w)) for n, w in workers.items()}

    done = threading.Event()
    publisher = threading.Thread(target=publish_slowly, args=(pipeline, events, 40, 0.5, done), daemon=True)
    publisher.start()
    restarts = {}
    for name in names:
        other = next(n for n in names if n != name)
        time.sleep(3)
        others_before = len(assignments(workers[other]))
        stopped_in = workers[name].terminate_within(35)
        assert stopped_in is not None, f"{name} did not stop"
        started = time.monotonic()
        workers[name] = pipeline.start_worker(loglevel="info", LEDGER_CONSUMER_GROUP_INSTANCE_ID=name, **STATIC)
        wait_until(lambda: assignments(workers[name]), 60, interval=0.2, message=f"{name} to get its partitions back")
        back_in = time.monotonic() - started
        time.sleep(3)  # a rebalance of the other worker would show by now
        restarts[name] = {"stopped_in_s": round(stopped_in, 1), "back_in_s": round(back_in, 1),
                          "its_assignments": assignments(workers[name]),
                          "other_assignments": len(assignments(workers[other])) - others_before}
    publisher.join(120)
    assert done.is_set()

    assert_exact_outputs(pipeline, events)
    print(f"rolling restart: {restarts} (assignments before: {baseline})")
    # Each restarted worker was assigned once (its own partitions back); the worker that stayed up
    # meanwhile received no assignment: no rebalance.
    for r in restarts.values():
        assert r["other_assignments"] == 0, restarts
        assert len(r["its_assignments"]) == 1, restarts
    assert sum(assignments(w)[-1] for w in workers.values()) == TOPIC_PARTITIONS
