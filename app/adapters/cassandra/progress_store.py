"""A consumer's durable input position per partition, kept in Cassandra next to what it applied.

The decider (on the events topic) and the projector (on the ledger topic) each record the next
offset to process once a batch is durable; the table is keyed by topic, and each topic has one
consuming role (its name, ``decider_progress``, predates the projector's use of it). On
(re)assignment a worker seeks to this position when Kafka's committed offset is ahead of it, so an
offset committed too early can never skip a message whose effects are not stored.
"""
from __future__ import annotations

from cassandra.query import BatchStatement, BatchType

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
        """Every partition's position in one statement: an unlogged batch within the topic's partition
        of the table (applied all or nothing, like any single-partition batch)."""
        if not next_offsets:
            return
        if len(next_offsets) == 1:
            (partition, offset), = next_offsets.items()
            await execute(self.session, self._upsert, (offset, topic, partition))
            return
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for partition, offset in next_offsets.items():
            batch.add(self._upsert, (offset, topic, partition))
        await execute(self.session, batch)
