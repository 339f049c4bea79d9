"""The decider's batch orchestration, with in-memory stores and a recording publisher."""
from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from app.adapters.avro.mapping import AvroMessageCodec, decode_ledger_entry, decode_rejection, encode_event
from app.adapters.kafka.connection import KafkaConnection
from app.adapters.kafka.outbox import KafkaOutbox, OutputTopics
from app.adapters.kafka.producer import BatchProducer
from app.adapters.memory.event_store import InMemoryEventStore, InMemoryProgressStore
from app.domain.processed_ids import PROCESSED_IDS_BOUND
from app.service.decider import Decider
from app.service.member_cache import MemberCache, loaded_state_cache
from app.service.ports import InputMessage
from tests.support import fake_kafka
from tests.support.domain_builders import DAY, T0, acquire, event, plan, release, renew

TOPICS = OutputTopics("ledger", "rejections", "dlq")


class RecordingProducer:
    """Stands in for the Kafka producer behind the real outbox: records what would be produced."""

    max_message_bytes = 1_000_000

    def __init__(self):
        self.records = []

    async def publish(self, records):
        self.records += records

    def on(self, topic):
        return [r for r in self.records if r.topic == topic]


def make_decider(store=None, snapshot_every=100, cache_size=100, **options):
    store = store or InMemoryEventStore()
    progress = InMemoryProgressStore()
    producer = RecordingProducer()
    decider = Decider(store, progress, KafkaOutbox(producer, TOPICS), AvroMessageCodec(), loaded_state_cache(cache_size, 64 * 2**20),
                      snapshot_every, **options)
    return decider, store, progress, producer


def messages(events, partition=0, start=0, timestamp=None):
    """Keyed by member_id; `timestamp`: the Kafka message timestamp of every message (ms)."""
    return [InputMessage("events", partition, start + i, e.member_id.encode(), encode_event(e), (), timestamp)
            for i, e in enumerate(events)]


def run(coro):
    return asyncio.run(coro)


def test_accepted_and_rejected_events_are_stored_published_and_progress_saved():
    decider, store, progress, publisher = make_decider()
    evs = [event(acquire("l1", device="d1"), at=T0), event(acquire("l2", device="d2"), at=T0 + 1)]
    report = run(decider.process(messages(evs, partition=3, start=10)))
    assert report.accepted == 1 and report.rejected == {"DEVICE_LIMIT": 1}
    entry = decode_ledger_entry(publisher.on("ledger")[0].value)
    assert (entry.recorded.seq, entry.source.partition, entry.source.offset) == (1, 3, 10)
    rejection = decode_rejection(publisher.on("rejections")[0].value)
    assert rejection.reason == "DEVICE_LIMIT" and "d1" in rejection.detail
    assert sorted(store.rows["m1"]) == [(1, 0), (1, 1)]
    assert run(progress.load("events")) == {3: 12}


def test_undecodable_and_malformed_messages_become_dead_letters_and_the_rest_is_processed():
    decider, store, _, publisher = make_decider()
    good = event(acquire("l1"))
    bad_id = event(acquire("l 2"))  # space: identifier out of pattern
    batch = [InputMessage("events", 0, 0, b"m1", b"\x00garbage", ())] + messages([bad_id, good], start=1)
    report = run(decider.process(batch))
    assert report.accepted == 1
    assert report.dead_letters == {"bad_marker": 1, "bad_identifier": 1}
    dlq = publisher.on("dlq")
    assert dlq[0].value == b"\x00garbage" and dict(dlq[0].headers)["error.code"] == b"bad_marker"
    assert dict(dlq[1].headers)["source.offset"] == b"1"


@pytest.mark.parametrize("key", [None, b"m2"], ids=["no-key", "other-member"])
def test_a_message_whose_key_is_not_its_member_id_is_a_key_mismatch_dead_letter(key):
    """A keyless or wrongly keyed message could land in another partition than the member's other
    events, and one member would be decided in two partitions at once."""
    decider, store, _, publisher = make_decider()
    bad = event(acquire("l1", device="d1"), at=T0)
    good = event(acquire("l2", device="d2"), at=T0 + 1)  # accepted: the dead letter took no device slot
    batch = [InputMessage("events", 0, 0, key, encode_event(bad), ())] + messages([good], start=1)
    report = run(decider.process(batch))
    assert report.dead_letters == {"key_mismatch": 1} and report.accepted == 1
    headers = dict(publisher.on("dlq")[0].headers)
    assert (headers["error.kind"], headers["error.code"]) == (b"malformed", b"key_mismatch")
    assert publisher.on("dlq")[0].key == key
    assert list(run(store.load("m1")).licenses) == ["l2"]


def test_an_event_far_ahead_of_its_message_timestamp_is_a_clock_skew_dead_letter_and_moves_no_clock():
    decider, store, _, publisher = make_decider()
    future = event(acquire("l1", device="d1"), at=T0 + 5 * DAY)  # a producer clock 5 days ahead
    skewed = messages([future], timestamp=T0)
    report = run(decider.process(skewed))
    assert report.dead_letters == {"clock_skew": 1} and report.accepted == 0
    dead = publisher.on("dlq")[0]
    headers = dict(dead.headers)
    assert (headers["error.kind"], headers["error.code"]) == (b"malformed", b"clock_skew")
    assert b"5 days after the message timestamp" in headers["error.detail"]
    assert dead.value == skewed[0].value

    # the member clock stayed at T0: a license expiring before the skewed time is still accepted,
    # on another device (the dead letter took no device slot)
    report = run(decider.process(messages([event(acquire("l2", device="d2", expires=T0 + DAY), at=T0 + 1)],
                                          start=1, timestamp=T0 + 1)))
    assert report.accepted == 1 and not report.rejected
    state = run(store.load("m1"))
    assert state.clock == T0 + 1 and list(state.licenses) == ["l2"]

    # the timestamp is stored with the message: a redelivery to a restarted worker decides the same
    restarted, _, _, _ = make_decider(store)
    assert run(restarted.process(skewed)).dead_letters == {"clock_skew": 1}


@pytest.mark.parametrize(("limit", "timestamp", "accepted"), [
    (3_600_000, T0 + 5 * DAY - 3_600_000, 1),  # exactly at the default limit
    (3_600_000, T0 + 5 * DAY - 3_600_001, 0),  # 1 ms over it
    (0, T0, 1),                                 # the guard turned off
    (3_600_000, None, 1),                       # a message without a timestamp: no guard
    (60_000, T0 + 5 * DAY - 60_001, 0),        # a limit of the decider's own
])
def test_the_skew_limit_is_the_deciders(limit, timestamp, accepted):
    decider, _, _, _ = make_decider(max_future_skew_ms=limit)
    report = run(decider.process(messages([event(acquire("l1"), at=T0 + 5 * DAY)], timestamp=timestamp)))
    assert report.accepted == accepted and sum(report.dead_letters.values()) == 1 - accepted


def test_a_negative_skew_limit_is_refused():
    with pytest.raises(ValueError, match="max_future_skew_ms"):
        make_decider(max_future_skew_ms=-1)


def test_a_snapshot_interval_below_one_row_is_refused():
    with pytest.raises(ValueError, match="snapshot_every"):
        make_decider(snapshot_every=0)


class PreparingSession:
    """Enough of a Cassandra session for the stores' constructors, which prepare statements."""

    def prepare(self, cql):
        return cql


def test_the_workers_decider_takes_the_skew_limit_from_the_settings(monkeypatch):
    from app.bootstrap import Stores
    from app.config import Settings

    monkeypatch.delenv("LEDGER_MAX_FUTURE_SKEW_MS", raising=False)
    assert Settings().max_future_skew_ms == 3_600_000
    monkeypatch.setenv("LEDGER_MAX_FUTURE_SKEW_MS", "5000")
    stores = Stores(Settings(), cluster=None, session=PreparingSession(), redis=None)
    decider = stores.decider(KafkaOutbox(RecordingProducer(), TOPICS), InMemoryEventStore())
    assert decider.max_future_skew_ms == 5000


def test_redelivered_batch_changes_nothing_and_republishes_outcomes():
    decider, store, _, publisher = make_decider()
    batch = messages([event(acquire("l1", device="d1")), event(acquire("l2", device="d2"))])
    run(decider.process(batch))
    rows_before = dict(store.rows["m1"])
    fresh, _, _, publisher2 = make_decider(store)  # a restarted worker: empty cache
    report = run(fresh.process(batch))
    assert report.accepted == 0 and report.duplicates == 2
    assert store.rows["m1"] == rows_before
    assert [r.topic for r in publisher2.records] == ["ledger", "rejections"]


class CrashingProducer(RecordingProducer):
    """The worker dies after the append, before anything is acknowledged."""

    async def publish(self, records):
        raise RuntimeError("the worker died before the producer was acknowledged")


def test_a_redelivered_batch_publishes_stored_and_new_decisions_of_a_member_in_seq_order():
    """Issue 10 item 8: a crash between append and publish, then the batch comes again with more.
    The stored, never published decisions and the new ones go out in (seq, sub) order, not the new
    ones first: the ledger of a member is in seq order."""
    first = messages([event(acquire("l1", device="d1"), at=T0, event_id="a"),        # (1, 0)
                      event(acquire("l2", device="d2"), at=T0 + 1, event_id="b")])   # (1, 1) DEVICE_LIMIT
    crashing = Decider(InMemoryEventStore(), InMemoryProgressStore(), KafkaOutbox(CrashingProducer(), TOPICS),
                       AvroMessageCodec(), MemberCache(10))
    with pytest.raises(RuntimeError, match="died"):
        run(crashing.process(first))
    store = crashing.store
    assert sorted(store.rows["m1"]) == [(1, 0), (1, 1)]

    more = messages([event(release("l1"), at=T0 + 2, event_id="c"),                    # (2, 0)
                     event(acquire("l3", device="d3"), at=T0 + 3, event_id="d")], start=2)  # (3, 0)
    restarted, _, _, producer = make_decider(store)
    report = run(restarted.process(first + more))
    assert (report.duplicates, report.accepted) == (2, 2)

    def position(record):
        if record.topic == "ledger":
            return decode_ledger_entry(record.value).recorded.seq, 0
        return None, decode_rejection(record.value).event.event_id

    assert [position(r) for r in producer.records] == [(1, 0), (None, "b"), (2, 0), (3, 0)]


def test_an_outcome_is_final_across_a_redelivered_batch():
    """A rejection followed in the same batch by an event that frees the slot stays a rejection."""
    decider, store, _, _ = make_decider()
    run(decider.process(messages([event(acquire("l1", device="d1"), event_id="a")])))
    batch = messages([event(acquire("l2", device="d2"), event_id="b"),  # DEVICE_LIMIT
                      event(release("l1"), event_id="c")], start=1)     # frees d1's slot
    run(decider.process(batch))
    restarted, _, _, publisher = make_decider(store)
    report = run(restarted.process(batch))
    assert report.duplicates == 2 and report.accepted == 0
    assert "l2" not in run(store.load("m1")).licenses


def test_a_lost_append_reloads_the_member_and_decides_again():
    store = InMemoryEventStore()
    zombie, _, _, _ = make_decider(store)
    owner, _, _, _ = make_decider(store)
    run(zombie.process(messages([event(plan(device_limit=2), event_id="p")])))  # zombie caches seq 1
    run(owner.process(messages([event(acquire("l1"), event_id="x")], start=1)))  # owner loads, appends seq 2
    report = run(zombie.process(messages([event(acquire("l2", device="d2"), event_id="y")], start=2)))
    assert report.conflicts == 1 and report.accepted == 1
    assert report.store_behind == 0  # another writer moved the head forward: nothing was lost
    assert sorted(store.rows["m1"]) == [(1, 0), (2, 0), (3, 0)]


def test_a_store_that_lost_acknowledged_rows_is_reported(caplog):
    """A single Cassandra node that acknowledged rows before they were on disk, then crashed: the
    worker's cached state is ahead of the store, which no other writer can cause."""
    decider, store, _, _ = make_decider()
    run(decider.process(messages([event(plan(device_limit=2), event_id="p"), event(acquire("l1"), event_id="x")])))
    del store.rows["m1"][(2, 0)]  # the crash took the last acknowledged row
    with caplog.at_level("ERROR", logger="app.service.decider"):
        report = run(decider.process(messages([event(acquire("l2", device="d2"), event_id="y")], start=2)))
    assert report.store_behind == 1 and report.conflicts == 1
    assert "m1 is (1, 0), behind (2, 0)" in caplog.text


def test_a_batch_of_n_or_more_rows_snapshots_once_and_loading_from_it_equals_folding():
    decider, store, _, _ = make_decider(snapshot_every=3)
    evs = [event(acquire(f"l{i}", expires=T0 + 90 * DAY), at=T0 + i) for i in range(7)]
    report = run(decider.process(messages(evs)))
    assert report.snapshots == 1 and store.snapshots["m1"][-1].seq == 7
    from_snapshot = run(store.load("m1"))
    store.snapshots.clear()
    assert run(store.load("m1")) == from_snapshot


def rejections(n, start=0):
    """``n`` events of a member that has nothing: every one is UNKNOWN_LICENSE, none accepted."""
    return [event(release(f"nope{i}"), at=T0 + i, event_id=f"r{i}") for i in range(start, start + n)]


def snapshot_positions(store, member="m1"):
    return [s.position for s in store.snapshots.get(member, [])]


def test_a_member_that_only_collects_rejections_is_snapshotted_every_n_decided_rows():
    """Issue 10 item 12: snapshots followed the accepted seq only, so a member with 250 rejections
    and no acceptance had none and every load folded all its rows. Rows count, whatever their kind,
    and a restarted worker counts on from the rows its load folded after the latest snapshot."""
    decider, store, _, _ = make_decider(snapshot_every=100)
    evs = rejections(250)
    reports = [run(decider.process(messages(evs[i:i + 50], start=i))) for i in range(0, 250, 50)]
    assert [r.snapshots for r in reports] == [0, 1, 0, 1, 0]
    assert snapshot_positions(store) == [(0, 100), (0, 200)]
    assert run(store.load("m1")) == run(_without_snapshots(store).load("m1"))

    restarted, _, _, _ = make_decider(store, snapshot_every=100)  # loads (0, 200) and folds 50 rows
    report = run(restarted.process(messages(rejections(49, start=250), start=250)))
    assert report.snapshots == 0  # 99 rows since (0, 200)
    report = run(restarted.process(messages(rejections(1, start=299), start=299)))
    assert report.snapshots == 1 and snapshot_positions(store)[-1] == (0, 300)


def test_a_member_loaded_with_n_rows_after_its_snapshot_is_snapshotted_even_by_a_batch_of_duplicates():
    """A member stored before this rule (rejections only, no snapshot), or whose worker died between
    the append and the snapshot: the load folds its rows, and the next batch snapshots it."""
    writer, store, _, _ = make_decider(snapshot_every=10_000)
    evs = rejections(150)
    run(writer.process(messages(evs)))
    assert snapshot_positions(store) == []
    restarted, _, _, _ = make_decider(store, snapshot_every=100)
    report = run(restarted.process(messages(evs[-1:], start=149)))
    assert (report.duplicates, report.snapshots) == (1, 1)
    assert snapshot_positions(store) == [(0, 150)]


def test_accepted_and_rejected_rows_both_count_towards_a_snapshot():
    decider, store, _, _ = make_decider(snapshot_every=4)
    evs = [event(acquire("l1", device="d1"), at=T0),                 # (1, 0)
           event(acquire("l2", device="d2"), at=T0 + 1),             # (1, 1) DEVICE_LIMIT
           event(acquire("l3", device="d3"), at=T0 + 2),             # (1, 2) DEVICE_LIMIT
           event(release("l1"), at=T0 + 3)]                          # (2, 0)
    assert run(decider.process(messages(evs[:3]))).snapshots == 0
    assert run(decider.process(messages(evs[3:], start=3))).snapshots == 1
    assert snapshot_positions(store) == [(2, 0)]


def test_only_the_newest_three_snapshots_of_a_member_are_kept():
    decider, store, _, _ = make_decider(snapshot_every=10)
    evs = rejections(60)
    for i in range(0, 60, 10):
        assert run(decider.process(messages(evs[i:i + 10], start=i))).snapshots == 1
    assert snapshot_positions(store) == [(0, 40), (0, 50), (0, 60)]
    assert run(store.load("m1")) == run(_without_snapshots(store).load("m1"))


def _without_snapshots(store):
    bare = InMemoryEventStore()
    bare.rows = store.rows
    return bare


def test_the_report_counts_cache_hits_loads_and_the_rows_the_loads_folded():
    decider, store, _, _ = make_decider(snapshot_every=100, cache_size=1)
    first = run(decider.process(messages([event(plan(), member="m1"), event(plan(plan_id="p2"), member="m1"),
                                          event(plan(), member="m2")])))
    assert (first.cache_hits, first.loaded, first.rows_folded) == (0, 2, 0)  # both new: nothing to fold
    again = run(decider.process(messages([event(plan(plan_id="p3"), member="m1"),
                                          event(plan(plan_id="p4"), member="m2")], start=3)))
    # The cache holds one member (m2, the last put); m1 is loaded with its 2 stored rows.
    assert (again.cache_hits, again.loaded, again.rows_folded) == (1, 1, 2)


@pytest.mark.parametrize("capacity", [1, 2])
def test_cache_is_bounded(capacity):
    decider, _, _, _ = make_decider(cache_size=capacity)
    run(decider.process(messages([event(plan(), member=f"m{i}") for i in range(5)])))
    assert len(decider.cache) == capacity


def test_a_zombie_cannot_slip_a_rejection_under_a_snapshot_and_a_redelivery_gets_one_outcome():
    """The zombie holds the member at (1, 0) while the owner stored (2, 0) and snapshotted it. The
    zombie's rejection goes to (1, 1), a free slot: the append must still lose, because it was
    decided from a state that is no longer the member's head."""
    store = InMemoryEventStore()
    zombie, _, _, _ = make_decider(store, snapshot_every=2)
    owner, _, _, _ = make_decider(store, snapshot_every=2)
    run(zombie.process(messages([event(plan(device_limit=1), event_id="p")])))  # zombie caches (1, 0)
    run(owner.process(messages([event(acquire("l1"), event_id="x")], start=1)))  # (2, 0), snapshot
    assert store.snapshots["m1"][-1].seq == 2
    late = messages([event(release("nope"), event_id="y")], start=2)  # UNKNOWN_LICENSE
    report = run(zombie.process(late))
    assert report.conflicts == 1 and report.rejected == {"UNKNOWN_LICENSE": 1}
    restarted, _, _, publisher = make_decider(store, snapshot_every=2)
    again = run(restarted.process(late))
    assert again.duplicates == 1 and not again.rejected
    assert [p for p, d in sorted(store.rows["m1"].items()) if d.event.event_id == "y"] == [(2, 1)]


def test_an_event_older_than_the_processed_id_bound_is_still_a_duplicate():
    """A member with more decided events than the state keeps ids of: a redelivered old renewal is
    found through the store's event-id lookup, not renewed a second time."""
    decider, store, _, _ = make_decider()
    old = event(renew("l1", expires=T0 + 60 * DAY), at=T0 + 1, event_id="renewal")
    evs = [event(acquire("l1", max_renewals=None), at=T0, event_id="acquire"), old]
    evs += [event(plan(device_limit=1 + i % 3), at=T0 + 2 + i, event_id=f"p{i}")
            for i in range(PROCESSED_IDS_BOUND + 300)]
    for start in range(0, len(evs), 500):
        run(decider.process(messages(evs[start:start + 500], start=start)))
    before = run(store.load("m1"))
    assert "renewal" not in before.processed and before.licenses["l1"].renewals == 1
    rows_before = len(store.rows["m1"])

    for worker in (decider, make_decider(store)[0]):  # the live one (cached state) and a restarted one
        worker.outbox.producer = producer = RecordingProducer()
        report = run(worker.process(messages([old], start=len(evs))))
        assert (report.duplicates, report.accepted) == (1, 0)
        assert len(store.rows["m1"]) == rows_before
        assert run(store.load("m1")).licenses["l1"].renewals == 1
        republished = decode_ledger_entry(producer.on("ledger")[0].value)
        assert (republished.recorded.seq, republished.recorded.event.event_id) == (2, "renewal")


def test_members_below_the_processed_id_bound_cost_no_lookup():
    class CountingStore(InMemoryEventStore):
        lookups = 0

        async def find_many(self, member_id, event_ids):
            self.lookups += 1
            return await super().find_many(member_id, event_ids)

    decider, store, _, _ = make_decider(CountingStore())
    run(decider.process(messages([event(plan(), member=f"m{i}", event_id=f"e{i}") for i in range(50)])))
    run(make_decider(store)[0].process(messages([event(acquire("l1"), member=f"m{i}") for i in range(50)], start=50)))
    assert store.lookups == 0


def test_a_999950_byte_input_becomes_a_truncated_dead_letter_and_the_batch_completes(monkeypatch):
    """The user's report: a 999,950-byte value fits the broker, but its dead letter (value + headers)
    did not fit the producer's message.max.bytes; produce() raised and the batch was retried for ever.
    The real BatchProducer runs over a fake confluent Producer enforcing the limit like librdkafka."""
    broker = fake_kafka.install(monkeypatch)
    original = os.urandom(999_950)
    batch = [InputMessage("events", 0, 0, b"m1", original, ())] + messages([event(acquire("l1"))], start=1)
    progress = InMemoryProgressStore()
    decider = Decider(InMemoryEventStore(), progress, KafkaOutbox(BatchProducer(KafkaConnection("fake:9092")), TOPICS),
                      AvroMessageCodec(), MemberCache(10))

    report = run(decider.process(batch))

    assert report.accepted == 1 and report.dead_letters == {"bad_marker": 1}
    assert len(broker.on("ledger")) == 1 and run(progress.load("events")) == {0: 2}
    [(_, key, value, headers)] = broker.on("dlq")
    h = dict(headers)
    assert key == b"m1" and h["error.code"] == b"bad_marker" and h["source.offset"] == b"0"
    assert h["dlq.truncated"] == b"true" and h["dlq.original_size"] == b"999950"
    assert h["dlq.original_sha256"] == hashlib.sha256(original).hexdigest().encode()
    assert original.startswith(value) and len(value) > 990_000
    assert b"truncated" in h["error.detail"]
    assert fake_kafka.wire_size(key, value, headers) <= fake_kafka.LIBRDKAFKA_DEFAULT_MAX
    assert report.truncated == 1


def test_a_rejection_too_large_to_publish_becomes_an_output_too_large_dead_letter_and_stays_stored(monkeypatch):
    """Not only huge strings: a DEVICE_LIMIT detail lists every device in use, so it grows with the
    plan's device_limit. Here 150 devices of 63 characters against a 10,000-byte producer limit."""
    from app.observability import DIVERTED, record_decider_batch

    broker = fake_kafka.install(monkeypatch)
    store = InMemoryEventStore()
    decider = Decider(store, InMemoryProgressStore(),
                      KafkaOutbox(BatchProducer(KafkaConnection("fake:9092"), max_message_bytes=10_000), TOPICS),
                      AvroMessageCodec(), MemberCache(10))
    devices = [f"{'d' * 60}{i:03d}" for i in range(151)]
    evs = [event(plan(device_limit=150), at=T0)] + [
        event(acquire(f"l{i}", device=d), at=T0 + 1 + i) for i, d in enumerate(devices)]
    before = DIVERTED.labels("output_too_large")._value.get()

    report = run(decider.process(messages(evs)))
    record_decider_batch(report, 0.1)

    assert report.accepted == 151 and report.rejected == {"DEVICE_LIMIT": 1}
    assert report.diverted == {"output_too_large": 1}
    assert DIVERTED.labels("output_too_large")._value.get() == before + 1
    assert broker.on("rejections") == [] and len(broker.on("ledger")) == 151
    [(_, _, value, headers)] = broker.on("dlq")
    h = dict(headers)
    assert h["error.code"] == b"output_too_large" and h["source.offset"] == b"151"
    assert value == encode_event(evs[-1]) and b"event store" in h["error.detail"]
    assert store.rows["m1"][(151, 1)].reason == "DEVICE_LIMIT"  # durable, though not on the rejections topic


def test_decide_makes_a_batch_durable_and_publish_then_outputs_it_and_saves_its_progress():
    """The two halves the worker overlaps: the next batch is decided from the cached states of a
    batch not yet published, and the ledger still gets every member's entries in seq order."""
    decider, store, progress, publisher = make_decider()
    first = run(decider.decide(messages([event(acquire("l1", device="d1"), at=T0)], start=0)))
    assert sorted(store.rows["m1"]) == [(1, 0)] and decider.cache.get("m1") is not None
    assert publisher.records == [] and run(progress.load("events")) == {}

    async def second_decided_then_both_published():
        second = await decider.decide(messages([event(acquire("l2", device="d1"), at=T0 + 1)], start=1))
        await decider.publish(first)
        await decider.publish(second)
        return second

    second = run(second_decided_then_both_published())
    assert second.report.accepted == 1 and decider.cache.get("m1").state.position[0] == 2
    assert [decode_ledger_entry(r.value).recorded.seq for r in publisher.on("ledger")] == [1, 2]
    assert run(progress.load("events")) == {0: 2}


def test_a_publish_that_failed_publishes_the_same_outputs_when_tried_again():
    decider, _, progress, publisher = make_decider()
    decided = run(decider.decide(messages([event(acquire("l1", device="d1"), at=T0)], start=4)))
    publish = publisher.publish

    async def refuse(records):
        raise TimeoutError("Kafka is away")

    publisher.publish = refuse
    with pytest.raises(TimeoutError):
        run(decider.publish(decided))
    assert run(progress.load("events")) == {}
    publisher.publish = publish
    report = run(decider.publish(decided))
    assert report.accepted == 1 and len(publisher.on("ledger")) == 1
    assert run(progress.load("events")) == {0: 5}


def test_the_workers_pipeline_retries_a_failed_publish_and_counts_the_batch_once_published():
    from app.entrypoints.worker.faust_app import decider_pipeline
    from app.observability import WorkerHealth
    from app.service.retry import Backoff

    decider, _, progress, publisher = make_decider()
    health = WorkerHealth(["decider"], stall_timeout_s=60)
    publish, failures = publisher.publish, []

    async def fails_once(records):
        if not failures:
            failures.append(1)
            raise TimeoutError("Kafka is away")
        await publish(records)

    publisher.publish = fails_once

    async def scenario():
        pipeline = decider_pipeline(decider, health, Backoff(first_s=0.001, max_s=0.01))
        await pipeline.submit(messages([event(acquire("l1", device="d1"), at=T0)], start=7))
        assert health.readiness()[1]["stages"]["decider"]["batches"] == 0  # decided, not yet published
        return await pipeline.settle(5.0)

    assert run(scenario()) and failures == [1]
    assert len(publisher.on("ledger")) == 1 and run(progress.load("events")) == {0: 8}
    assert health.readiness()[1]["stages"]["decider"]["batches"] == 1
