"""The pipeline end to end: events published to Kafka come out as an exact ledger, rejections,
dead letters and views, with the workers as real processes against the real stack."""
from __future__ import annotations

import uuid
from collections import Counter

from app.adapters.avro.mapping import encode_event
from tests.support.domain_builders import acquire, event, plan
from tests.support.helpers import wait_until
from tests.support.pipeline import EXPECTED_REASONS, assert_exact_outputs, expected_states, scripted_history


def test_scripted_history_gives_the_exact_ledger_rejections_and_views(pipeline):
    events = scripted_history(uuid.uuid4().hex[:6])
    worker = pipeline.start_worker()
    pipeline.publish(events)
    _, outcomes, rejected = assert_exact_outputs(pipeline, events)
    assert set(rejected.values()) == EXPECTED_REASONS
    assert worker.alive


def test_publishing_the_same_events_twice_changes_nothing(pipeline):
    events = scripted_history(uuid.uuid4().hex[:6])
    pipeline.start_worker()
    pipeline.publish(events)
    states, _, _ = assert_exact_outputs(pipeline, events)
    rows_before = {m: pipeline.stored_rows(m) for m in states}

    pipeline.publish(events)
    # the duplicates' outcomes are published again: wait for the second copy of the rejections
    n_rejections = sum(1 for e in events if expected_states(events)[1].get(e.event_id, "accepted") != "accepted")
    wait_until(lambda: len(pipeline.consume_all(pipeline.settings.rejections_topic)) >= 2 * n_rejections,
               90, interval=0.5, message="republished rejections")
    assert_exact_outputs(pipeline, events)
    assert {m: pipeline.stored_rows(m) for m in states} == rows_before


def test_bad_messages_go_to_the_dlq_with_reasons_and_good_ones_are_processed(pipeline):
    prefix = uuid.uuid4().hex[:6]
    good = scripted_history(prefix)
    worker = pipeline.start_worker()
    valid = encode_event(good[0])
    bad = [
        (b"m-x", b"not avro at all"),                                  # bad_marker
        (b"m-x", b"\xc3\x01" + b"\x00" * 8 + b"body"),                 # unknown_fingerprint
        (b"m-x", valid[:14]),                                          # truncated
        (f"{prefix}-a".encode(), encode_event(event(acquire("bad id"), member=f"{prefix}-a"))),  # bad_identifier
        (f"{prefix}-a".encode(), encode_event(event(plan(device_limit=0), member=f"{prefix}-a"))),  # out_of_range
        (b"m-x", None),                                                # empty value
    ]
    records = []
    for i, ev in enumerate(good):
        records.append((ev.member_id.encode(), encode_event(ev)))
        if i % 5 == 0 and bad:
            records.append(bad.pop(0))
    records += bad
    pipeline.publish_raw(records)
    assert_exact_outputs(pipeline, good)
    dlq = pipeline.dead_letters()
    codes = Counter(dict(m.headers())["error.code"].decode() for m in dlq)
    assert codes == {"bad_marker": 1, "unknown_fingerprint": 1, "truncated": 2, "bad_identifier": 1, "out_of_range": 1}
    for m in dlq:
        headers = dict(m.headers())
        assert headers["source.topic"].decode() == pipeline.settings.events_topic
        assert int(headers["source.offset"]) >= 0 and headers["error.detail"]
    assert worker.alive
