"""A bounded, least-recently-used cache of member states, aware of which input partition each came from.

Entries of revoked partitions are dropped: after a rebalance another worker owns those members, and
a state kept here would be stale the moment it appends.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class MemberCache(Generic[V]):
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("cache capacity must be at least 1")
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[int, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, member_id: str) -> V | None:
        entry = self._entries.get(member_id)
        if entry is None:
            return None
        self._entries.move_to_end(member_id)
        return entry[1]

    def put(self, member_id: str, partition: int, value: V) -> None:
        self._entries[member_id] = (partition, value)
        self._entries.move_to_end(member_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def drop(self, member_id: str) -> None:
        self._entries.pop(member_id, None)

    def drop_partitions(self, partitions: set[int]) -> int:
        doomed = [m for m, (p, _) in self._entries.items() if p in partitions]
        for m in doomed:
            del self._entries[m]
        return len(doomed)

    def clear(self) -> None:
        self._entries.clear()
