"""A replay that stops after it switched readers is finished by the next `ledger replay`; the old
namespace is dropped only once every live projector writes the new one. In-memory stores
(tests/support/replay_world.py), the replay's own code and the projector's."""
from __future__ import annotations

import asyncio

import pytest

from app.service.ports import CATCH_UP, DROP_OLD
from app.service.replay import ReplayError
from tests.support.domain_builders import DAY, T0, acquire, event, plan, release
from tests.support.replay_world import ReplayWorld


def run(coro):
    return asyncio.run(coro)


def history(member: str, start: int, count: int):
    """A plan, then ``count`` acquisitions and releases of one member from ``start``."""
    events = [event(plan(device_limit=3, monthly_limit=500), at=start, member=member,
                    event_id=f"{member}-plan-{start}")] if start == T0 else []
    for i in range(count):
        at = start + (i + 1) * 60_000
        payload = acquire(f"l{start}-{i}", device=f"d{i % 3}", expires=at + 30 * DAY) if i % 3 != 2 \
            else release(f"l{start}-{i - 1}")
        events.append(event(payload, at=at, member=member, event_id=f"{member}-{start}-{i}"))
    return events


MEMBERS = ["a", "b", "c", "d"]


def first_history(world: ReplayWorld, live) -> None:
    """Every member's first events, decided and applied by the live projector to v1."""
    run(live.process(run(world.decide([e for m in MEMBERS for e in history(m, T0, 6)]))))


def test_a_replay_that_fails_in_the_catch_up_after_the_switch_is_finished_by_the_next_run():
    world = ReplayWorld()
    live = world.live_projector()
    first_history(world, live)

    async def decided_meanwhile_then_the_ledger_fails(run_):
        # Decided after the rebuild read the ledger and applied by the live projector to the old
        # namespace (the pointer has not moved yet): only the catch-up brings these to the new one.
        appended = await world.decide(history("b", T0 + DAY, 4) + history("c", T0 + DAY, 4))
        await live.process(appended)
        world.fail_after = 0  # the catch-up's first read fails

    with pytest.raises(ReplayError, match="catching up after the switch to v2"):
        run(world.replay().run(before_switch=decided_meanwhile_then_the_ledger_fails))
    assert run(world.pointer.active()) == "v2"
    assert world.seqs("v1") == world.expected()
    assert world.seqs("v2")["b"] < world.expected()["b"]  # the gap: b's latest entries are only in v1

    # After the switch the live projector writes v2; c's next entry fills c's gap from the event store,
    # b has no new entry and stays behind.
    run(live.process(run(world.decide(history("c", T0 + 2 * DAY, 1)))))
    assert world.seqs("v2")["c"] == world.expected()["c"]
    assert world.seqs("v2")["b"] < world.expected()["b"]

    world.fail_after = None
    resumed = run(world.replay().run())
    assert (resumed.old_ns, resumed.new_ns, resumed.resumed) == ("v1", "v2", True)
    assert run(world.pointer.active()) == "v2" and "v3" not in world.views  # finished, not a new replay
    assert world.seqs("v2") == world.expected()
    assert world.model_seqs("v2") == world.expected()
    assert resumed.caught_up_applied > 0
    assert run(world.records.load()) is None  # complete: the next run is a fresh replay

    fresh = run(world.replay().run())
    assert (fresh.old_ns, fresh.new_ns, fresh.resumed) == ("v2", "v3", False)
    assert world.seqs("v3") == world.expected()


def test_a_stop_between_the_record_and_the_switch_leaves_readers_where_they_were_and_the_next_run_starts_afresh():
    world = ReplayWorld()
    live = world.live_projector()
    first_history(world, live)
    replay = world.replay()

    async def stopped_at_the_switch():
        run_ = await replay.prepare()
        await replay.rebuild(run_)
        await replay.verify(run_)
        original = world.pointer.switch

        async def lost(expected, new):
            raise ConnectionError("redis went away before the switch")
        world.pointer.switch = lost
        with pytest.raises(ConnectionError):
            await replay.switch(run_)
        world.pointer.switch = original
    run(stopped_at_the_switch())
    assert run(world.records.load()).phase == CATCH_UP and run(world.pointer.active()) == "v1"

    again = run(world.replay().run())
    assert (again.old_ns, again.new_ns, again.resumed) == ("v1", "v3", False)  # the half-built v2 is skipped
    assert world.seqs("v3") == world.expected() and run(world.records.load()) is None


# --- --drop-old waits for the live projectors -------------------------------------------------


class Notes:
    """A ReplayObserver that keeps the notes and tells when one arrives."""

    def __init__(self):
        self.notes: list[str] = []
        self.waiting = asyncio.Event()

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    def note(self, message: str) -> None:
        self.notes.append(message)
        if message.startswith("waiting for"):
            self.waiting.set()


def test_drop_old_waits_for_a_live_projector_that_has_not_seen_the_switch():
    world = ReplayWorld()
    live = world.live_projector("w1")
    first_history(world, live)  # w1 acknowledged v1 with its batch
    notes = Notes()

    async def scenario():
        replay = world.replay(drop_timeout_s=10, ack_poll_s=0.01)
        replay.observer = notes
        task = asyncio.create_task(replay.run(drop_old=True))
        await asyncio.wait_for(notes.waiting.wait(), 5)
        assert "v1" in world.views and not task.done()  # waiting, nothing dropped
        assert await live.heartbeat() == "v2"  # idle: it follows the pointer and acknowledges v2
        return await asyncio.wait_for(task, 5)

    result = run(scenario())
    assert result.switched and result.projectors == 1 and result.dropped == {"memory": 4}
    assert "v1" not in world.views and "v1" not in world.models
    assert any("waiting for 1 live projector(s) to acknowledge v2" in n for n in notes.notes)
    assert run(world.records.load()) is None


def test_drop_old_proceeds_at_once_when_every_live_projector_acknowledged_the_new_namespace():
    world = ReplayWorld()
    live = world.live_projector("w1")
    first_history(world, live)
    notes = Notes()

    async def scenario():
        replay = world.replay(drop_timeout_s=0.0)
        replay.observer = notes
        run_ = await replay.prepare()
        run_.drop_old = True
        await replay.rebuild(run_)
        await replay.verify(run_)
        await replay.switch(run_)
        await replay.catch_up(run_)
        assert await live.heartbeat() == "v2"
        await replay.drop_old(run_)  # no wait: a timeout of 0 would fail at the first look otherwise
        return run_

    result = run(scenario())
    assert result.projectors == 1 and "v1" not in world.views
    assert not any(n.startswith("waiting for") for n in notes.notes)


def test_drop_old_proceeds_with_no_live_projector():
    """Live means: its latest acknowledgement has not expired (a projector renews it every quarter
    of its time to live). One that stopped renewing it, killed or cut off, counts as gone."""
    world = ReplayWorld()
    clock = [1000.0]
    world.acks.clock = lambda: clock[0]
    live = world.live_projector("w1", ack_ttl_s=10)
    first_history(world, live)  # acknowledged v1 until 1010
    clock[0] += 10.5  # w1 stopped: nothing renewed it
    result = run(world.replay(drop_timeout_s=0.0).run(drop_old=True))
    assert result.switched and result.projectors == 0 and "v1" not in world.views


def test_drop_old_times_out_keeps_the_old_namespace_and_a_re_run_finishes_the_drop():
    world = ReplayWorld()
    live = world.live_projector("w1")
    first_history(world, live)
    with pytest.raises(ReplayError) as failed:
        run(world.replay(drop_timeout_s=0.2, ack_poll_s=0.01).run(drop_old=True))
    assert str(failed.value) == ("1 live projector(s) still write v1 after 0.2 s (w1): namespace v1 is kept, readers "
                                 "are on v2; run `ledger replay --drop-old` again to drop it")
    assert "v1" in world.views and world.seqs("v2") == world.expected() == world.seqs("v1")
    assert run(world.records.load()).phase == DROP_OLD

    assert run(live.heartbeat()) == "v2"
    finished = run(world.replay(drop_timeout_s=0.0).run(drop_old=True))
    assert (finished.resumed, finished.old_ns, finished.new_ns) == (True, "v1", "v2")
    assert finished.caught_up_entries == 0 and finished.dropped == {"memory": 4}
    assert "v1" not in world.views and run(world.records.load()) is None


def test_a_re_run_without_drop_old_keeps_the_old_namespace_and_replays_afresh():
    world = ReplayWorld()
    live = world.live_projector("w1")
    first_history(world, live)
    with pytest.raises(ReplayError):
        run(world.replay(drop_timeout_s=0.0).run(drop_old=True))
    again = run(world.replay().run())
    assert (again.resumed, again.old_ns, again.new_ns) == (False, "v2", "v3")
    assert "v1" in world.views and run(world.pointer.active()) == "v3"
