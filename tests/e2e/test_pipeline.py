"""The pipeline end to end: events published to Kafka come out as an exact ledger, rejections,
dead letters and views, with the workers as real processes against the real stack."""
from __future__ import annotations

import time
import uuid
from collections import Counter

from app.adapters.avro.mapping import encode_event
from tests.support.domain_builders import DAY, HOUR, acquire, event, plan
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
    # the good members' views say nothing of the partition of the "m-x" records
    wait_until(lambda: len(pipeline.dead_letters()) >= 6, 60, interval=0.5, message="six dead letters")
    dlq = pipeline.dead_letters()
    codes = Counter(dict(m.headers())["error.code"].decode() for m in dlq)
    assert codes == {"bad_marker": 1, "unknown_fingerprint": 1, "truncated": 2, "bad_identifier": 1, "out_of_range": 1}
    for m in dlq:
        headers = dict(m.headers())
        assert headers["source.topic"].decode() == pipeline.settings.events_topic
        assert int(headers["source.offset"]) >= 0 and headers["error.detail"]
    assert worker.alive


def test_future_skewed_and_keyless_events_are_dead_letters_and_move_no_member(pipeline):
    """An event 2 days ahead of its message's timestamp is a dead letter `clock_skew` and leaves the
    member clock alone (the member's next event, expiring before that time, is accepted); a
    message without a key is a dead letter `key_mismatch` and decides nothing."""
    prefix = uuid.uuid4().hex[:6]
    member, keyless_member = f"{prefix}-f", f"{prefix}-k"
    now = int(time.time() * 1000)
    good = [event(plan(device_limit=1), at=now - HOUR, member=member),
            event(acquire("l2", device="d2", expires=now + DAY), at=now, member=member)]
    future = event(acquire("l1", device="d1", expires=now + 30 * DAY), at=now + 2 * DAY, member=member)
    keyless = event(acquire("l9", device="d9", expires=now + 30 * DAY), at=now, member=keyless_member)
    worker = pipeline.start_worker()
    pipeline.publish_raw([
        (member.encode(), encode_event(good[0]), now),
        (member.encode(), encode_event(future), now),  # occurred_at 2 days after the message timestamp
        (None, encode_event(keyless), now),
        (member.encode(), encode_event(good[1]), now),
    ])
    _, outcomes, _ = assert_exact_outputs(pipeline, good)
    assert outcomes[good[1].event_id] == "accepted"
    assert pipeline.view(member).clock == now

    wait_until(lambda: len(pipeline.dead_letters()) >= 2, 60, interval=0.5, message="two dead letters")
    dead = {dict(m.headers())["error.code"].decode(): m for m in pipeline.dead_letters()}
    assert sorted(dead) == ["clock_skew", "key_mismatch"]
    skewed, unkeyed = dict(dead["clock_skew"].headers()), dict(dead["key_mismatch"].headers())
    assert skewed["error.kind"] == unkeyed["error.kind"] == b"malformed"
    assert b"is 2 days after the message timestamp" in skewed["error.detail"]
    assert dead["clock_skew"].value() == encode_event(future) and dead["clock_skew"].key() == member.encode()
    assert dead["key_mismatch"].key() is None and b"no key" in unkeyed["error.detail"]
    assert pipeline.view(keyless_member) is None and pipeline.stored_rows(keyless_member) == []
    assert [r.event_id for r in pipeline.stored_rows(member)] == [e.event_id for e in good]
    assert worker.alive
