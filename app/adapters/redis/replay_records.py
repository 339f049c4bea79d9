"""The unfinished replay (`app.service.ports.ReplayRecord`) as one JSON string, ``ledger:replay``,
next to the namespace pointer: written before the replay switches, read by the next ``ledger
replay``, deleted once the replay is complete. One key (one slot on a Redis Cluster)."""
from __future__ import annotations

import json

from app.service.ports import ReplayRecord

REPLAY_RECORD_KEY = "ledger:replay"


class RedisReplayRecords:
    def __init__(self, client):
        self.client = client

    async def load(self) -> ReplayRecord | None:
        raw = await self.client.get(REPLAY_RECORD_KEY)
        if raw is None:
            return None
        data = json.loads(raw)
        return ReplayRecord(old_ns=data["old_ns"], new_ns=data["new_ns"], topic=data["topic"],
                            end={int(p): int(o) for p, o in data["end"].items()}, phase=data["phase"])

    async def save(self, record: ReplayRecord) -> None:
        await self.client.set(REPLAY_RECORD_KEY, json.dumps({
            "old_ns": record.old_ns, "new_ns": record.new_ns, "topic": record.topic,
            "end": {str(p): o for p, o in sorted(record.end.items())}, "phase": record.phase}))

    async def clear(self) -> None:
        await self.client.delete(REPLAY_RECORD_KEY)
