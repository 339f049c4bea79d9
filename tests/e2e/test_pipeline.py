"""The pipeline end to end: events published to Kafka come out as an exact ledger, rejections,
dead letters and views, with the workers as real processes against the real stack."""
from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict

from app.adapters.avro.mapping import encode_event
from app.domain.views import digest
from tests.e2e.conftest import expected_states
from tests.helpers import wait_until
from tests.unit.domain_builders import DAY, HOUR, T0, acquire, deactivate, event, plan, release, renew


def scripted_history(prefix: str):
    """Every rule and rejection reason of DOMAIN.md, spread over a few members."""
    a, b, c, d = (f"{prefix}-{x}" for x in "abcd")
    return [
        # a: device limits, downloads per device, renewals, releases, deactivation, late event
        event(plan(device_limit=2, downloads_per_device=2), at=T0, member=a),
        event(acquire("l1", device="d1", title="t1"), at=T0 + 1, member=a),
        event(acquire("l1", device="d1", title="t1"), at=T0 + 2, member=a),                  # LICENSE_ID_CONFLICT
        event(acquire("l2", device="d2", expires=T0 + 3), at=T0 + 3, member=a),              # ALREADY_EXPIRED
        event(acquire("l2", device="d2"), at=T0 + 4, member=a),
        event(acquire("l3", device="d3"), at=T0 + 5, member=a),                              # DEVICE_LIMIT
        event(acquire("l3", device="d1"), at=T0 + 6, member=a),
        event(acquire("l4", device="d1"), at=T0 + 7, member=a),                              # DEVICE_DOWNLOAD_LIMIT
        event(renew("nope"), at=T0 + 8, member=a),                                            # UNKNOWN_LICENSE
        event(release("l3"), at=T0 + 9, member=a),
        event(renew("l3"), at=T0 + 10, member=a),                                             # LICENSE_RELEASED
        event(release("l3"), at=T0 + 11, member=a),                                           # LICENSE_RELEASED
        event(renew("l1", expires=T0 + 40 * DAY), at=T0 + 12, member=a),
        event(plan(device_limit=1, downloads_per_device=1), at=T0 + 13, member=a),           # downgrade keeps licenses
        event(deactivate("d2"), at=T0 + 14, member=a),
        event(acquire("l5", device="d9"), at=T0 - DAY, member=a),                             # late: clock stays
        # b: renewal limit, a renewal counting toward the title's yearly limit, expired renewal
        event(acquire("k1", device="d1", title="t7", max_renewals=1, title_yearly_limit=3,
                      expires=T0 + HOUR), at=T0, member=b),
        event(renew("k1", expires=T0 + 2 * HOUR), at=T0 + 1, member=b),
        event(renew("k1", expires=T0 + 3 * HOUR), at=T0 + 2, member=b),                      # RENEWAL_LIMIT
        event(acquire("k2", device="d1", title="t7", title_yearly_limit=3), at=T0 + 3, member=b),
        event(acquire("k3", device="d1", title="t7", title_yearly_limit=3), at=T0 + 4, member=b),  # TITLE_YEARLY_LIMIT
        event(renew("k2", expires=T0 + 5), at=T0 + 10, member=b),                            # ALREADY_EXPIRED
        # c: studio limit and monthly limit, renewal counts toward the month
        event(plan(device_limit=4, monthly_limit=3), at=T0, member=c),
        event(acquire("s1", device="d1", studio="st", studio_concurrent_limit=1), at=T0 + 1, member=c),
        event(acquire("s2", device="d2", studio="st", studio_concurrent_limit=1), at=T0 + 2, member=c),  # STUDIO_CONCURRENT_LIMIT
        event(renew("s1"), at=T0 + 3, member=c),
        event(acquire("s3", device="d3", studio="x"), at=T0 + 4, member=c),
        event(acquire("s4", device="d4", studio="y"), at=T0 + 5, member=c),                  # MONTHLY_LIMIT
        # d: an expired license renewed re-checks the device limit
        event(acquire("r1", device="d1", expires=T0 + HOUR), at=T0, member=d),
        event(acquire("r2", device="d2", expires=T0 + 10 * DAY), at=T0 + 2 * HOUR, member=d),
        event(renew("r1", expires=T0 + 20 * DAY), at=T0 + 3 * HOUR, member=d),               # DEVICE_LIMIT
    ]


EXPECTED_REASONS = {
    "LICENSE_ID_CONFLICT", "ALREADY_EXPIRED", "DEVICE_LIMIT", "DEVICE_DOWNLOAD_LIMIT", "UNKNOWN_LICENSE",
    "LICENSE_RELEASED", "RENEWAL_LIMIT", "TITLE_YEARLY_LIMIT", "STUDIO_CONCURRENT_LIMIT", "MONTHLY_LIMIT",
}


def assert_exact_outputs(pipeline, events):
    states, outcomes = expected_states(events)
    pipeline.wait_for_views(states)

    for member_id, state in states.items():
        view = pipeline.view(member_id)
        assert view is not None and digest(view) == digest(state), f"view of {member_id}"
        rows = pipeline.stored_rows(member_id)
        accepted = [r for r in rows if r.kind == "accepted"]
        assert [r.seq for r in accepted] == list(range(1, state.seq + 1)), f"seq of {member_id}"
        assert len({r.event_id for r in rows}) == len(rows), f"an event stored twice for {member_id}"

    ledger = pipeline.ledger_entries()
    by_member = defaultdict(dict)
    for entry in ledger:
        seq, event_id = entry.recorded.seq, entry.recorded.event.event_id
        assert by_member[entry.recorded.event.member_id].setdefault(seq, event_id) == event_id
    for member_id, state in states.items():
        assert sorted(by_member[member_id]) == list(range(1, state.seq + 1))
    accepted_ids = {e for m in by_member.values() for e in m.values()}
    assert accepted_ids == {e for e, o in outcomes.items() if o == "accepted"}

    rejected = {r.event.event_id: r.reason for r in pipeline.rejections()}
    assert rejected == {e: o for e, o in outcomes.items() if o != "accepted"}
    return states, outcomes, rejected


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
