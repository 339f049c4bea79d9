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
