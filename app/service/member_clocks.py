"""The member-clock projector: keeps each member's clock over every decided event, from the
rejections topic (accepted events move the views' clock through the ledger already).

One call of `ClockProjector.process` handles one micro-batch of ``downloads.rejections`` messages:
1. decode each message (an undecodable one is logged and counted, never fatal);
2. take the highest clock per member in the batch;
3. advance each member's clock to at least that (a max: redelivery, reordering and replays of the
   topic change nothing);
4. save the durable input position, when a ProgressStore is given, so a stop that acknowledged an
   unapplied batch cannot skip it.
The read API evaluates eligibility at max(view clock, member clock, at), as the decider would.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from app.service.ports import DecodeError, InputMessage, MemberClocks, MessageCodec, ProgressStore
from app.service.progress import save_progress

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ClockReport:
    messages: int = 0
    undecodable: int = 0
    members: int = 0


class ClockProjector:
    def __init__(self, codec: MessageCodec, clocks: MemberClocks, progress: ProgressStore | None = None):
        self.codec = codec
        self.clocks = clocks
        self.progress = progress

    async def process(self, messages: list[InputMessage]) -> ClockReport:
        report = ClockReport(messages=len(messages))
        highest: dict[str, int] = {}
        for message in messages:
            try:
                if message.value is None:
                    raise DecodeError("truncated", "no value (tombstone)")
                rejection = self.codec.decode_rejection(message.value)
            except DecodeError as exc:
                report.undecodable += 1
                log.warning("undecodable rejection at %s[%d]@%d skipped: %s",
                            message.topic, message.partition, message.offset, exc)
                continue
            member_id = rejection.event.member_id
            highest[member_id] = max(highest.get(member_id, rejection.clock), rejection.clock)
        if highest:
            await self.clocks.advance(highest)
        report.members = len(highest)
        if self.progress is not None:
            await save_progress(self.progress, messages)
        return report
