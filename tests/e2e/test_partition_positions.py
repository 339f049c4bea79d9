"""The worker's contiguity check against the real Kafka: a gap that holds no record (here: ledger
entries removed below the projector's position, as retention would) is accepted, not sought back for
ever, and the projector fills the members' gaps from the event store: the views of the members whose
last entry is left end exact."""
from __future__ import annotations

import uuid

from confluent_kafka import TopicPartition

from app.adapters.kafka.lag import ConsumerLag
from app.bootstrap import kafka_connection
from app.domain.views import digest
from tests.support.helpers import wait_until
from tests.support.pipeline import assert_exact_outputs, expected_states, scripted_history
from tests.support.random_history import random_history


def test_a_projector_resumes_past_ledger_entries_removed_below_its_position(pipeline, kafka_admin):
    prefix = uuid.uuid4().hex[:6]
    first = scripted_history(prefix)
    pipeline.start_worker(role="all")
    pipeline.publish(first)
    assert_exact_outputs(pipeline, first)
    pipeline.workers[-1].stop()

    events = first + random_history(prefix, members=12, events=240, seed=7)
    accepted = sum(1 for outcome in expected_states(events)[1].values() if outcome == "accepted")
    decider = pipeline.start_worker(role="decider")
    pipeline.publish(events[len(first):])
    wait_until(lambda: len({(e.recorded.event.member_id, e.recorded.seq) for e in pipeline.ledger_entries()})
               >= accepted, 120, interval=1.0, message="every accepted event on the ledger")
    decider.stop()

    topic = pipeline.settings.ledger_topic
    progress = {r.partition: r.next_offset for r in pipeline.cassandra.execute(
        f"SELECT partition, next_offset FROM {pipeline.settings.cassandra_keyspace}.decider_progress "
        "WHERE topic = %s", (topic,))}
    lag = ConsumerLag(kafka_connection(pipeline.settings))
    try:
        ends = {p: high for (_, p), (_, high) in lag.watermarks([topic]).items()}
    finally:
        lag.close()
    # Each partition keeps only its last entry: the ones between the projector's position and it are gone.
    cut = [TopicPartition(topic, p, end - 1) for p, end in ends.items() if end - 1 > progress.get(p, 0)]
    assert cut, "the second part put unprojected entries on the ledger"
    for done in kafka_admin.delete_records(cut).values():
        done.result(30)

    # Only the members of the entries left can be projected (the others' entries are gone, as with
    # retention); each left entry is its member's last, so the gap fill must bring the whole history.
    states, _ = expected_states(events)
    left = {e.recorded.event.member_id for e in pipeline.ledger_entries()}
    projector = pipeline.start_worker(role="projector", loglevel="info")
    pipeline.wait_for_views({m: states[m] for m in left})
    for member_id in left:
        view = pipeline.view(member_id)
        assert view is not None and digest(view) == digest(states[member_id]), f"view of {member_id}"
    log = projector.log_text()
    assert "hold no record a consumer is given" in log
    assert "seeking back" not in log


def test_a_projector_behind_an_input_backlog_is_left_alone(pipeline):
    """Under a backlog of input events the decider's stream buffer stays full and the projector's
    partitions can go for seconds without a ledger entry handed over. Nothing is wrong then, and
    nothing may be sought back (the bench of 2026-11-30 sought every ledger partition back every 10 s,
    and one of those seeks, made while the fetcher handed out records, crashed a worker)."""
    events = random_history(uuid.uuid4().hex[:6], members=400, events=16_000, seed=11)
    pipeline.publish(events)
    # A short idle time: the projector's partitions are checked within seconds of the start, long
    # before the backlog is worked off, and every check reads Faust's read offset.
    worker = pipeline.start_worker(role="all", LEDGER_PARTITION_IDLE_S="2")
    assert_exact_outputs(pipeline, events)
    log = worker.log_text()
    assert "seeking back" not in log, log[-3000:]
    assert "idle check of" not in log, log[-3000:]  # e.g. Faust's read offset gone in an upgrade


def test_the_views_keep_pace_with_the_decisions_under_an_input_backlog(pipeline):
    """Faust fetches every topic in one loop, which waits while a stream's buffer is full. With no
    bound on the records of one fetch, a fetch held thousands of input events, the loop waited on the
    decider's full buffer for each of them, and the projector was handed almost nothing until the
    backlog was gone (the bench of 2026-11-30: decisions done at 74 s, views at 122 s). A fetch now
    holds at most LEDGER_BATCH_SIZE records, and a full buffer only takes its partitions out of the
    next fetches."""
    events = random_history(uuid.uuid4().hex[:6], members=2_000, events=16_000, seed=12)
    pipeline.publish(events)
    pipeline.start_worker(role="all")
    settings, ks = pipeline.settings, pipeline.settings.cassandra_keyspace

    def position(topic: str) -> int:
        return sum(r.next_offset for r in pipeline.cassandra.execute(
            f"SELECT next_offset FROM {ks}.decider_progress WHERE topic = %s", (topic,)))

    wait_until(lambda: position(settings.events_topic) >= len(events) // 2, timeout=180,
               message="the decider half way through the backlog")
    decided, projected = position(settings.events_topic), position(settings.ledger_topic)
    # Most events are accepted, one ledger entry each. Measured at half way: 3,786 entries projected
    # for 9,063 events decided, and 114 before the fetch was bounded.
    assert projected >= decided // 6, f"{projected} ledger entries projected when {decided} events were decided"
    assert_exact_outputs(pipeline, events)
