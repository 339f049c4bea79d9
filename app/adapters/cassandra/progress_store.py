"""The decider's durable input position per partition, kept in Cassandra next to the member state.

On (re)assignment the decider seeks to this position when Kafka's committed offset is ahead of it,
so an offset committed too early can never skip an event that is not in the store.
"""
from __future__ import annotations

import asyncio

from app.adapters.cassandra.aio import execute


class CassandraProgressStore:
    def __init__(self, session, keyspace: str):
        self.session = session
        self._select = session.prepare(f"SELECT partition, next_offset FROM {keyspace}.decider_progress WHERE topic = ?")
        self._upsert = session.prepare(
            f"UPDATE {keyspace}.decider_progress SET next_offset = ? WHERE topic = ? AND partition = ?")

    async def load(self, topic: str) -> dict[int, int]:
        return {r.partition: r.next_offset for r in await execute(self.session, self._select, (topic,))}

    async def save(self, topic: str, next_offsets: dict[int, int]) -> None:
        await asyncio.gather(*(execute(self.session, self._upsert, (offset, topic, partition))
                               for partition, offset in next_offsets.items()))
