"""Operating the pipeline against the real stack: `ledger status` and the workers' lag gauges, and
`ledger dlq list|show|redrive` (issue 15)."""
from __future__ import annotations

import json
import time
import uuid

from prometheus_client.parser import text_string_to_metric_families

from app.adapters.avro.mapping import encode_event
from app.domain.views import digest
from tests.support.domain_builders import DAY, HOUR, acquire, event, plan
from tests.support.helpers import ledger, scrape, wait_until
from tests.support.pipeline import expected_states
from tools.stack.process import free_port

MINUTE_MS = 60_000


def status(pipeline) -> dict[str, dict]:
    """`ledger status --json` by role; a run that fails (its reads of the cluster time out) is asked
    again, for up to 30 s."""
    def succeeded():
        done = ledger("status", "--json", env=pipeline.env)
        return done.returncode == 0 and done
    done = wait_until(succeeded, 30, interval=0.5, message="`ledger status --json` to succeed")
    return {g["role"]: g for g in json.loads(done.stdout)["groups"]}


def no_lag(group: dict, *stages: str) -> bool:
    return all(group["lag"][s]["messages"] == 0 for s in stages)


def gauges(port: int) -> dict[tuple, float]:
    """The lag gauges a worker serves: (name, role, topic or None, partition or None) -> value."""
    found = {}
    for family in text_string_to_metric_families(scrape(port)):
        for s in family.samples:
            if s.name.startswith("ledger_consumer_"):
                found[(s.name, s.labels.get("role"), s.labels.get("topic"), s.labels.get("partition"))] = s.value
    return found


def test_a_stopped_worker_leaves_lag_and_no_members_and_a_running_one_brings_the_lag_to_zero(pipeline):
    prefix = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    first = [event(plan(device_limit=3), at=now - HOUR, member=f"{prefix}-{i}") for i in range(6)]
    later = [event(acquire(f"l{i}", device="d1", expires=now + DAY), at=now, member=f"{prefix}-{i}") for i in range(6)]
    worker = pipeline.start_worker()
    pipeline.publish(first)
    pipeline.wait_for_views(expected_states(first)[0])
    # the projector commits its offsets up to a second after the views it wrote
    wait_until(lambda: no_lag(status(pipeline)["all"], "decider", "projector"), 30, interval=0.5,
               message="the first events and their ledger entries committed")
    worker.stop()

    pipeline.publish(later)  # nobody consumes them
    time.sleep(1.2)
    groups = status(pipeline)
    g = groups["all"]
    assert g["in_use"] and g["members"] == []
    assert g["lag"]["decider"]["messages"] == len(later) and g["lag"]["projector"]["messages"] == 0
    assert g["lag"]["decider"]["seconds"] >= 1.0
    lagging = [p for p in g["partitions"] if p["lag_messages"]]
    assert sum(p["lag_messages"] for p in lagging) == len(later)
    assert all(p["oldest_timestamp"] and p["committed"] is not None and p["role"] == "decider" for p in lagging)
    assert not groups["decider"]["in_use"] and not groups["projector"]["in_use"]
    text = ledger("status", env=pipeline.env)
    assert text.returncode == 0, text.stderr
    assert f"group {pipeline.env['LEDGER_CONSUMER_GROUP']}-all (role all): NO MEMBERS" in text.stdout
    assert f"lag {len(later)} message(s)" in text.stdout

    port = free_port()
    pipeline.start_worker(metrics_port=port, LEDGER_LAG_INTERVAL_S="1")
    pipeline.wait_for_views(expected_states(first + later)[0])

    def caught_up():
        g = status(pipeline)["all"]
        return no_lag(g, "decider", "projector") and len(g["members"]) == 1
    wait_until(caught_up, 60, interval=0.5, message="the running worker to bring the lag to 0")
    member = status(pipeline)["all"]["members"][0]
    assert len(member["assignment"]) == 36  # 12 partitions each of the input, ledger and rejections topics

    events_topic, ledger_topic = pipeline.settings.events_topic, pipeline.settings.ledger_topic
    rejections_topic = pipeline.settings.rejections_topic
    stage = {events_topic: "decider", ledger_topic: "projector", rejections_topic: "clocks"}

    def exported():
        g = gauges(port)
        lag = {k: v for k, v in g.items() if k[0] in ("ledger_consumer_lag_messages", "ledger_consumer_lag_seconds")}
        return (len(lag) == 2 * 36 and all(v == 0 for v in lag.values())
                and {k[2] for k in lag} == set(stage)
                and all(k[1] == stage[k[2]] for k in lag)
                and g.get(("ledger_consumer_group_members", "decider", None, None)) == 1
                and g.get(("ledger_consumer_group_members", "projector", None, None)) == 1)
    wait_until(exported, 30, interval=0.5, message="the worker's lag gauges at 0 and its membership")


def _consume(pipeline, topic: str) -> list:
    return pipeline.consume_all(topic)


def test_dead_letters_are_listed_shown_and_redriven_once_the_cause_is_fixed_and_a_second_redrive_changes_nothing(pipeline):
    """clock_skew dead letters of a worker whose guard was too strict are decided once redriven to a
    worker with the guard relaxed (they keep their original timestamps, so the guard judges them as
    the producer sent them); a second redrive is all duplicates; a key_mismatch redriven fails again
    and is not redriven a second time."""
    prefix = uuid.uuid4().hex[:6]
    m1, m2, m3 = (f"{prefix}-{x}" for x in "123")
    now = int(time.time() * 1000)
    good = [event(plan(device_limit=2), at=now - HOUR, member=m1),
            event(acquire("l1", device="d1", expires=now + DAY), at=now - 30 * MINUTE_MS, member=m1)]
    skewed = [event(acquire("l2", device="d2", expires=now + DAY), at=now + 10 * MINUTE_MS, member=m1),
              event(acquire("k1", device="d1", expires=now + DAY), at=now + 10 * MINUTE_MS, member=m2)]
    wrong_key = event(acquire("w1", expires=now + DAY), at=now, member=m3)
    worker = pipeline.start_worker(LEDGER_MAX_FUTURE_SKEW_MS="60000")  # 1 minute: too strict for this producer
    pipeline.publish_raw([(e.member_id.encode(), encode_event(e)) for e in good + skewed]
                         + [(b"someone-else", encode_event(wrong_key))])
    pipeline.wait_for_views(expected_states(good)[0])
    wait_until(lambda: len(pipeline.dead_letters()) == 3, 60, interval=0.5, message="3 dead letters")

    listed = ledger("dlq", "list", "--json", env=pipeline.env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted((r["code"], r["event_id"]) for r in rows) == sorted(
        [("clock_skew", e.event_id) for e in skewed] + [("key_mismatch", wrong_key.event_id)])
    assert all(r["source_topic"] == pipeline.settings.events_topic and r["source_offset"] >= 0 for r in rows)
    one = ledger("dlq", "list", "--code", "key_mismatch", env=pipeline.env)
    assert one.returncode == 0 and "1 dead letter(s)" in one.stdout and wrong_key.event_id in one.stdout
    skew_row = next(r for r in rows if r["code"] == "clock_skew")
    shown = ledger("dlq", "show", skew_row["position"], env=pipeline.env)
    assert shown.returncode == 0, shown.stderr
    assert "error.code" in shown.stdout and "clock_skew" in shown.stdout and "source.timestamp" in shown.stdout
    assert "avro: DownloadEvent v" in shown.stdout and f"event id: {skew_row['event_id']}" in shown.stdout
    assert "00000000: c301" in shown.stdout
    missing = ledger("dlq", "show", "0:999999", env=pipeline.env)
    assert missing.returncode == 1 and missing.stderr.startswith("ledger dlq: no dead letter at 0:999999")
    assert "Traceback" not in missing.stderr

    worker.stop()  # the cause is fixed: the guard back at its default of 1 hour
    pipeline.start_worker()
    dry = ledger("dlq", "redrive", "--code", "clock_skew", "--dry-run", env=pipeline.env)
    assert dry.returncode == 0 and "dry run: 2 dead letter(s) would be redriven" in dry.stdout
    first = ledger("dlq", "redrive", "--code", "clock_skew", env=pipeline.env)
    assert first.returncode == 0, first.stderr
    assert "2 dead letter(s) redriven" in first.stdout and "(clock_skew 2)" in first.stdout
    assert "1 not selected" in first.stdout
    states, _ = expected_states(good + skewed)
    pipeline.wait_for_views(states)
    for member_id, state in states.items():
        assert digest(pipeline.view(member_id)) == digest(state)

    # the copies keep the original timestamps and say where they came from
    sources = {(r["source_partition"], r["source_offset"]): r for r in rows}
    copies = [m for m in _consume(pipeline, pipeline.settings.events_topic) if dict(m.headers() or ()).get("redrive.count")]
    assert len(copies) == 2
    dlq_by_position = {f"{m.partition()}:{m.offset()}": m for m in pipeline.dead_letters()}
    for copy in copies:
        h = dict(copy.headers())
        assert h["redrive.count"] == b"1"
        original = dlq_by_position[h["redrive.from"].decode()]
        oh = dict(original.headers())
        assert copy.timestamp()[1] == int(oh["source.timestamp"]) and copy.value() == original.value()
        assert copy.partition() == int(oh["source.partition"])
        assert (int(oh["source.partition"]), int(oh["source.offset"])) in sources

    views = {m: pipeline.view(m) for m in states}
    rows_before = {m: pipeline.stored_rows(m) for m in states}
    second = ledger("dlq", "redrive", "--code", "clock_skew", env=pipeline.env)
    assert second.returncode == 0 and "2 dead letter(s) redriven" in second.stdout
    wait_until(lambda: no_lag(status(pipeline)["all"], "decider"), 60, interval=0.5, message="the second redrive decided")
    wait_until(lambda: no_lag(status(pipeline)["all"], "projector"), 60, interval=0.5,
               message="the republished ledger entries projected")
    assert {m: pipeline.view(m) for m in states} == views
    assert {m: pipeline.stored_rows(m) for m in states} == rows_before

    # a message whose cause is not fixed fails again, and is not redriven in a loop
    redrive_key = ledger("dlq", "redrive", "--code", "key_mismatch", env=pipeline.env)
    assert redrive_key.returncode == 0 and "1 dead letter(s) redriven" in redrive_key.stdout
    wait_until(lambda: len(pipeline.dead_letters()) == 4, 60, interval=0.5, message="the key_mismatch failing again")
    again = [m for m in pipeline.dead_letters() if dict(m.headers()).get("redrive.count") == b"1"]
    assert len(again) == 1 and dict(again[0].headers())["error.code"] == b"key_mismatch"
    dry_again = ledger("dlq", "redrive", "--code", "key_mismatch", "--dry-run", env=pipeline.env)
    assert dry_again.returncode == 0, dry_again.stderr
    assert "1 skipped (already redriven 1)" in dry_again.stdout and "--force" in dry_again.stdout
    forced = ledger("dlq", "redrive", "--code", "key_mismatch", "--dry-run", "--force", env=pipeline.env)
    assert "2 dead letter(s) would be redriven" in forced.stdout


def test_dlq_and_status_errors_are_one_line(pipeline):
    bad = ledger("dlq", "show", "three", env=pipeline.env)
    assert bad.returncode == 1 and bad.stderr.strip() == "ledger dlq: expected PARTITION:OFFSET (e.g. 3:17), got 'three'"
    gone = ledger("dlq", "list", env={**pipeline.env, "LEDGER_DLQ_TOPIC": f"missing.{uuid.uuid4().hex[:6]}"})
    assert gone.returncode == 1 and "Traceback" not in gone.stderr and gone.stderr.count("\n") == 1
    unreachable = ledger("status", "--timeout", "1", env={**pipeline.env, "LEDGER_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert unreachable.returncode == 1 and unreachable.stderr.startswith(
        "ledger status: cannot read the consumer groups from 127.0.0.1:1:")
    # whichever gives up first: our own deadline, or librdkafka's request timeout
    assert unreachable.stderr.count("\n") == 1
    assert "no answer within 1s" in unreachable.stderr or "Timed out" in unreachable.stderr
    empty = ledger("dlq", "redrive", "--dry-run", env=pipeline.env)
    assert empty.returncode == 0 and "0 dead letter(s) would be redriven" in empty.stdout

