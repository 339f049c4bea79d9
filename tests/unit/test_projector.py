"""The projector's batch orchestration, with the in-memory event store and in-memory fakes of the
Redis views and Cassandra read models (each fenced by seq like the real ones)."""
from __future__ import annotations

import asyncio

import pytest

from app.adapters.avro.mapping import AvroMessageCodec, encode_ledger_entry
from app.adapters.memory.event_store import InMemoryEventStore
from app.adapters.memory.projections import InMemoryNamespacePointer, InMemoryReadModels, InMemoryViewStore
from app.domain import MemberState, evolve
from app.domain.history import Source
from app.domain.state_json import state_to_dict
from app.service.ledger_fold import LedgerGapError
from app.service.ports import InputMessage
from app.service.projector import Projector
from tests.support.domain_builders import DAY, T0, acquire, deactivate, event, plan, release, renew
from tests.support.histories import decided

LEDGER = "downloads.ledger"


def run(coro):
    return asyncio.run(coro)


# --- fakes --------------------------------------------------------------------------------


class FakeViews(InMemoryViewStore):
    """The in-memory view store, recording reads and writes, and failing on demand."""

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []
        self.writes: list[tuple[str, int]] = []
        self.fail = False

    async def read_many(self, member_ids):
        self.reads += member_ids
        return await super().read_many(member_ids)

    async def write_many(self, states):
        if self.fail:
            raise ConnectionError("redis is down")
        self.writes += [(s.member_id, s.seq) for s in states]
        return await super().write_many(states)


class FakeReadModels(InMemoryReadModels):
    def __init__(self):
        super().__init__()
        self.reads: list[str] = []
        self.writes: list[tuple[str, int]] = []
        self.fail = False

    async def read_states(self, member_ids):
        self.reads += member_ids
        return await super().read_states(member_ids)

    async def write_many(self, states):
        if self.fail:
            raise ConnectionError("cassandra is down")
        self.writes += [(s.member_id, s.seq) for s in states]
        return await super().write_many(states)


class World:
    """Fake stores per namespace, the active namespace pointer and an in-memory event store."""

    def __init__(self):
        self.pointer = InMemoryNamespacePointer("v1")
        self.views: dict[str, FakeViews] = {}
        self.models: dict[str, FakeReadModels] = {}
        self.event_store = InMemoryEventStore()

    @property
    def ns(self):
        return self.pointer.ns

    @ns.setter
    def ns(self, value):
        self.pointer.ns = value

    def views_for(self, ns):
        return self.views.setdefault(ns, FakeViews())

    def models_for(self, ns):
        return self.models.setdefault(ns, FakeReadModels())

    def projector(self, cache_size=100) -> Projector:
        return Projector(self.event_store, AvroMessageCodec(), self.views_for, self.models_for, self.pointer,
                         cache_size)


# --- ledger builders ----------------------------------------------------------------------


history = decided  # (ledger entries, stored decisions, final state)


def messages(recorded, partition=0, start=0):
    return [InputMessage(LEDGER, partition, start + i, r.event.member_id.encode(),
                         encode_ledger_entry(r, Source("downloads.events", 0, r.seq)))
            for i, r in enumerate(recorded)]


def member_events(member="m1"):
    """Ten events of one member: plan, acquisitions (one rejected), a renewal, releases."""
    return [
        event(plan(device_limit=2, monthly_limit=10), at=T0, member=member),
        event(acquire("l1", device="d1", title="t1"), at=T0 + 1, member=member),
        event(acquire("l2", device="d2", title="t2"), at=T0 + 2, member=member),
        event(acquire("l3", device="d3", title="t3"), at=T0 + 3, member=member),  # DEVICE_LIMIT
        event(renew("l1", expires=T0 + 90 * DAY), at=T0 + DAY, member=member),
        event(release("l2"), at=T0 + 2 * DAY, member=member),
        event(acquire("l4", device="d2", title="t1"), at=T0 + 3 * DAY, member=member),
        event(deactivate("d1"), at=T0 + 4 * DAY, member=member),
        event(acquire("l5", device="d1", title="t2"), at=T0 + 5 * DAY, member=member),
    ]


def view(state: MemberState) -> dict:
    return state_to_dict(state, include_processed=False)


# --- tests --------------------------------------------------------------------------------


def test_entries_applied_in_order_equal_the_decider_state_with_one_write_per_member_and_batch():
    world = World()
    recorded, _, final = history(member_events())
    assert len(recorded) == 8
    projector = world.projector()
    first = run(projector.process(messages(recorded[:5])))
    second = run(projector.process(messages(recorded[5:], start=5)))
    assert (first.applied, second.applied, first.duplicates + second.duplicates) == (5, 3, 0)
    assert first.members_written == second.members_written == 1
    assert view(world.views["v1"].states["m1"]) == view(final)
    assert view(world.models["v1"].states["m1"]) == view(final)
    assert world.views["v1"].writes == [("m1", 5), ("m1", 8)]
    # The second batch came from the cache, and Cassandra was told what it already held.
    assert world.views["v1"].reads == ["m1"] and world.models["v1"].reads == ["m1"]
    assert world.models["v1"].writes == [("m1", 5), ("m1", 8)]


def test_entries_out_of_order_within_a_batch_are_applied_in_seq_order():
    world = World()
    recorded, _, final = history(member_events())
    result = run(world.projector().process(messages(list(reversed(recorded)))))
    assert (result.applied, result.duplicates, result.gaps_filled) == (8, 0, 0)
    assert view(world.views["v1"].states["m1"]) == view(final)


def test_members_are_grouped_and_each_written_once():
    world = World()
    a, _, final_a = history(member_events("ma"), member="ma")
    b, _, final_b = history(member_events("mb"), member="mb")
    interleaved = [r for pair in zip(a, b) for r in pair]
    result = run(world.projector().process(messages(interleaved)))
    assert (result.applied, result.members_written) == (16, 2)
    assert view(world.views["v1"].states["ma"]) == view(final_a)
    assert view(world.views["v1"].states["mb"]) == view(final_b)
    assert sorted(world.views["v1"].writes) == [("ma", 8), ("mb", 8)]


def test_redelivered_entries_change_nothing():
    world = World()
    recorded, _, final = history(member_events())
    projector = world.projector()
    run(projector.process(messages(recorded)))
    again = run(projector.process(messages(recorded)))
    assert (again.applied, again.duplicates, again.members_written) == (0, 8, 0)
    overlap = run(projector.process(messages(recorded[3:] + recorded[3:])))
    assert (overlap.applied, overlap.duplicates) == (0, 10)
    assert world.views["v1"].writes == [("m1", 8)]
    assert view(world.views["v1"].states["m1"]) == view(final)


def test_redelivery_to_a_restarted_projector_changes_nothing():
    world = World()
    recorded, _, final = history(member_events())
    run(world.projector().process(messages(recorded)))
    restarted = world.projector()
    result = run(restarted.process(messages(recorded[4:])))
    assert (result.applied, result.duplicates, result.members_written) == (0, 4, 0)
    assert world.views["v1"].writes == [("m1", 8)]


def test_a_seq_gap_is_filled_from_the_event_store_and_equals_applying_everything():
    world = World()
    recorded, decisions, final = history(member_events())
    run(world.event_store.append({"m1": decisions}, {"m1": (0, 0)}))
    projector = world.projector()
    run(projector.process(messages(recorded[:2])))
    result = run(projector.process(messages(recorded[5:6], start=5)))  # seq 6 after seq 2
    assert (result.applied, result.gaps_filled, result.gap_entries) == (1, 1, 3)
    result = run(projector.process(messages(recorded[7:], start=7)))  # seq 8 after seq 6
    assert (result.applied, result.gaps_filled, result.gap_entries) == (1, 1, 1)
    assert view(world.views["v1"].states["m1"]) == view(final)
    assert view(world.models["v1"].states["m1"]) == view(final)


def test_a_fresh_projector_fills_the_gap_from_seq_zero():
    world = World()
    recorded, decisions, final = history(member_events())
    run(world.event_store.append({"m1": decisions}, {"m1": (0, 0)}))
    result = run(world.projector().process(messages(recorded[-1:])))
    assert (result.applied, result.gaps_filled, result.gap_entries) == (1, 1, 7)
    assert view(world.views["v1"].states["m1"]) == view(final)


def test_a_gap_the_event_store_cannot_fill_fails_the_batch_and_writes_nothing():
    world = World()
    recorded, decisions, _ = history(member_events())
    # A store that lacks seq 3 (appends cannot leave a gap: the rows go in directly).
    world.event_store.rows["m1"] = {d.position: d for d in decisions if d.seq != 3}
    projector = world.projector()
    run(projector.process(messages(recorded[:1])))
    with pytest.raises(LedgerGapError, match="m1"):
        run(projector.process(messages(recorded[4:5])))
    assert world.views["v1"].writes == [("m1", 1)]
    # Once the store has it, the redelivered batch goes through.
    world.event_store.rows["m1"].update({d.position: d for d in decisions if d.seq == 3})
    result = run(projector.process(messages(recorded[4:5])))
    assert (result.applied, result.gap_entries) == (1, 3)


def test_cache_is_dropped_when_the_active_namespace_changes():
    world = World()
    recorded, decisions, final = history(member_events())
    run(world.event_store.append({"m1": decisions}, {"m1": (0, 0)}))
    projector = world.projector()
    first = run(projector.process(messages(recorded[:4])))
    assert (first.namespace, first.cache_dropped) == ("v1", False)
    run(projector.process(messages(recorded[4:5], start=4)))
    assert world.views["v1"].reads == ["m1"]  # the second batch was served by the cache

    world.ns = "v2"  # the replay switched readers to a namespace it rebuilt up to seq 3
    world.views_for("v2").states["m1"] = world.models_for("v2").states["m1"] = _state_at(recorded, 3)
    switched = run(projector.process(messages(recorded[5:], start=5)))
    assert (switched.namespace, switched.cache_dropped) == ("v2", True)
    assert world.views["v2"].reads == ["m1"]
    assert (switched.applied, switched.gaps_filled, switched.gap_entries) == (3, 1, 2)
    assert view(world.views["v2"].states["m1"]) == view(final)
    assert world.views["v1"].states["m1"].seq == 5  # the old namespace is left alone


def test_cache_entries_of_revoked_partitions_are_dropped():
    world = World()
    a, _, _ = history(member_events("ma"), member="ma")
    b, _, _ = history(member_events("mb"), member="mb")
    projector = world.projector()
    run(projector.process(messages(a[:2], partition=0) + messages(b[:2], partition=1)))
    assert projector.cached_members == 2
    assert projector.drop_partitions([0]) == 1
    assert projector.drop_partitions({5}) == 0
    # Meanwhile the new owner of partition 0 moved "ma" on; this worker gets it back later.
    run(world.projector().process(messages(a[2:4], partition=0)))
    world.views["v1"].reads.clear()
    world.models["v1"].reads.clear()
    result = run(projector.process(messages(a[2:6], partition=0) + messages(b[2:4], partition=1)))
    assert world.views["v1"].reads == ["ma"] and world.models["v1"].reads == ["ma"]  # "mb" from the cache
    assert (result.applied, result.duplicates) == (4, 2)
    assert world.views["v1"].states["ma"].seq == 6 and world.views["v1"].states["mb"].seq == 4


def test_the_report_counts_members_from_the_cache_and_from_the_stores():
    world = World()
    projector = world.projector(cache_size=1)
    a, _, _ = history(member_events("ma"), member="ma")
    b, _, _ = history(member_events("mb"), member="mb")
    first = run(projector.process(messages(a[:2] + b[:2])))
    assert (first.cache_hits, first.loaded) == (0, 2)
    again = run(projector.process(messages(a[2:4] + b[2:4], start=4)))
    assert (again.cache_hits, again.loaded) == (1, 1)  # the cache kept mb, the last written
    assert world.views["v1"].reads.count("ma") == 2


def test_the_cache_is_bounded():
    world = World()
    projector = world.projector(cache_size=2)
    for i in range(5):
        recorded, _, _ = history(member_events(f"m{i}"), member=f"m{i}")
        run(projector.process(messages(recorded[:2])))
    assert projector.cached_members == 2


def test_a_store_that_lags_behind_is_repaired_even_by_a_batch_of_duplicates():
    # A crash after the Redis write and before the Cassandra one: the redelivered batch is all
    # duplicates for Redis, but a cache miss reads both stores and brings Cassandra forward.
    world = World()
    recorded, _, final = history(member_events())
    projector = world.projector()
    run(projector.process(messages(recorded[:3])))
    world.views["v1"].states["m1"] = _state_at(recorded, 8)
    restarted = world.projector()
    result = run(restarted.process(messages(recorded[3:])))
    assert (result.applied, result.duplicates, result.members_written) == (0, 5, 1)
    assert world.models["v1"].writes[-1] == ("m1", 8)  # Cassandra brought forward
    assert view(world.models["v1"].states["m1"]) == view(final)
    assert world.views["v1"].writes == [("m1", 3)]  # Redis was not rewritten

    # And the other way round: Redis lost its last writes.
    world.views["v1"].states["m1"] = _state_at(recorded, 2)
    result = run(world.projector().process(messages(recorded[7:])))
    assert (result.applied, result.duplicates, result.members_written) == (0, 1, 1)
    assert view(world.views["v1"].states["m1"]) == view(final)


def test_a_failed_write_fails_the_batch_and_the_redelivery_completes_it():
    world = World()
    recorded, _, final = history(member_events())
    projector = world.projector()
    run(projector.process(messages(recorded[:2])))
    world.models_for("v1").fail = True
    with pytest.raises(ConnectionError):
        run(projector.process(messages(recorded[2:])))
    assert world.views["v1"].states["m1"].seq == 8 and world.models["v1"].states["m1"].seq == 2
    world.models["v1"].fail = False
    result = run(projector.process(messages(recorded[2:])))
    assert (result.applied, result.duplicates, result.members_written) == (0, 6, 1)
    assert view(world.models["v1"].states["m1"]) == view(final)


def test_a_write_refused_by_the_redis_fence_drops_the_member_from_the_cache():
    world = World()
    recorded, _, _ = history(member_events())
    projector = world.projector()
    run(projector.process(messages(recorded[:2])))
    world.views["v1"].states["m1"] = _state_at(recorded, 6)  # another writer got ahead
    result = run(projector.process(messages(recorded[2:4])))
    assert result.redis_refused == 1 and projector.cached_members == 0


def test_undecodable_messages_are_counted_and_skipped():
    world = World()
    recorded, _, final = history(member_events())
    batch = messages(recorded)
    batch.insert(3, InputMessage(LEDGER, 0, 99, b"m1", b"\x00garbage"))
    batch.insert(5, InputMessage(LEDGER, 0, 100, b"m1", None))
    result = run(world.projector().process(batch))
    assert (result.messages, result.undecodable, result.applied) == (10, 2, 8)
    assert view(world.views["v1"].states["m1"]) == view(final)


def test_an_empty_batch_reads_the_namespace_and_writes_nothing():
    world = World()
    result = run(world.projector().process([]))
    assert (result.namespace, result.applied, result.members_written) == ("v1", 0, 0)
    assert world.views == {}


def _state_at(recorded, seq):
    state = MemberState.empty(recorded[0].event.member_id)
    for r in recorded[:seq]:
        state = evolve(state, r)
    return state


# --- acknowledging the namespace written ----------------------------------------------------


class GatedViews(FakeViews):
    """Views whose writes wait for ``gate`` (a batch held in flight)."""

    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()
        self.writing = asyncio.Event()

    async def write_many(self, states):
        self.writing.set()
        await self.gate.wait()
        return await super().write_many(states)


def test_the_projector_acknowledges_the_namespace_of_its_batches_and_follows_a_switch_when_idle():
    from app.adapters.memory.projections import InMemoryProjectorAcks

    world = World()
    acks = InMemoryProjectorAcks()
    recorded, decisions, _ = history(member_events())
    projector = Projector(world.event_store, AvroMessageCodec(), world.views_for, world.models_for, world.pointer,
                          acks=acks, worker_id="w1", ack_ttl_s=30)

    async def scenario():
        await world.event_store.append({"m1": decisions}, {"m1": (0, 0)})  # v2 starts empty: gaps are filled
        assert await projector.heartbeat() == "v1"  # before any batch: the pointer's namespace
        await projector.process(messages(recorded[:2]))
        assert await acks.live() == {"w1": "v1"}
        world.ns = "v2"
        result = await projector.process(messages(recorded[2:4], start=2))  # a batch reads the new pointer
        assert result.namespace == "v2" and await acks.live() == {"w1": "v2"}
        world.ns = "v3"
        assert await projector.heartbeat() == "v3"  # idle: no entry needed to follow the switch
        assert projector.namespace == "v3" and projector.cached_members == 0

    run(scenario())


def test_a_batch_in_flight_on_the_old_namespace_keeps_its_acknowledgement_until_it_is_done():
    from app.adapters.memory.projections import InMemoryProjectorAcks

    world = World()
    gated = world.views["v1"] = GatedViews()
    acks = InMemoryProjectorAcks()
    recorded, _, _ = history(member_events())
    projector = Projector(world.event_store, AvroMessageCodec(), world.views_for, world.models_for, world.pointer,
                          acks=acks, worker_id="w1", ack_ttl_s=30)

    async def scenario():
        batch = asyncio.create_task(projector.process(messages(recorded[:3])))
        await asyncio.wait_for(gated.writing.wait(), 5)  # the batch read v1 and is writing it
        world.ns = "v2"
        assert await projector.heartbeat() == "v1" and await acks.live() == {"w1": "v1"}
        gated.gate.set()
        await asyncio.wait_for(batch, 5)
        assert gated.states["m1"].seq == 3
        assert await projector.heartbeat() == "v2" and await acks.live() == {"w1": "v2"}

    run(scenario())
