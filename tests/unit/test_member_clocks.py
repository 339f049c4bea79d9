"""The member-clock projector: the highest rejection clock per member, forward only."""
from __future__ import annotations

import asyncio

from app.adapters.avro.mapping import AvroMessageCodec, encode_rejection
from app.adapters.memory.event_store import InMemoryProgressStore
from app.adapters.memory.projections import InMemoryMemberClocks
from app.domain.history import Source
from app.service.member_clocks import ClockProjector
from app.service.ports import InputMessage
from tests.support.domain_builders import T0, event, release


def rejection(member: str, clock: int, offset: int) -> InputMessage:
    ev = event(release("nope"), at=clock, member=member, event_id=f"e{offset}")
    value = encode_rejection(ev, "UNKNOWN_LICENSE", "no license nope", clock, Source("events", 0, offset))
    return InputMessage("rejections", 0, offset, member.encode(), value)


def test_each_member_clock_is_the_highest_rejection_clock_and_never_goes_back():
    clocks, progress = InMemoryMemberClocks(), InMemoryProgressStore()
    projector = ClockProjector(AvroMessageCodec(), clocks, progress)
    report = asyncio.run(projector.process([rejection("m1", T0 + 5, 0), rejection("m1", T0 + 9, 1),
                                            rejection("m2", T0 + 1, 2),
                                            InputMessage("rejections", 0, 3, b"m3", b"garbage")]))
    assert (report.members, report.undecodable) == (2, 1)
    assert clocks.clocks == {"m1": T0 + 9, "m2": T0 + 1}
    asyncio.run(projector.process([rejection("m1", T0 + 2, 4)]))  # late or redelivered: no change
    assert clocks.clocks["m1"] == T0 + 9
    assert asyncio.run(progress.load("rejections")) == {0: 5}
