"""A bounded, least-recently-used cache of member states, aware of which input partition each came from.

Entries of revoked partitions are dropped: after a rebalance another worker owns those members, and
a state kept here would be stale the moment it appends.

Two bounds, both enforced on every ``put`` by evicting the least recently used entries: a number of
entries (LEDGER_MEMBER_CACHE_SIZE) and, when the cache can weigh its values, an estimate of the
bytes they hold (LEDGER_MEMBER_CACHE_MB). Counting entries alone does not bound memory: a state near
the processed-id bound holds ~1.6 MB, so 50,000 of them would need ~80 GB. A value heavier than the
whole byte budget is not kept at all (the next batch loads it from the store again).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from app.domain.state import MemberState
from app.service.ports import LoadedState

V = TypeVar("V")

# Per-item costs of a MemberState in CPython 3.11 (64-bit), measured with tracemalloc on states
# decoded from their stored form (as the caches get them: from a snapshot, a Redis view or events,
# every string an object of its own); tests/unit/test_member_cache.py checks the estimate against
# tracemalloc within a factor of 2. Shared strings (evolve reuses an event's ids) only make the
# estimate err high.
ENTRY_BYTES = 200  # the cache's own entry: member_id key, (partition, value, size) tuple, dict slot
STATE_BYTES = 560  # MemberState, its Plan, member_id, the (empty) dicts and ProcessedIds
LICENSE_BYTES = 420  # License object, its 4 id strings and expiry, the licenses dict slot
TITLE_YEAR_COUNT_BYTES = 200  # ((title_id, year), count): key tuple, title string, dict slot
MONTH_COUNT_BYTES = 135  # ((year, month), count): key tuple, ints, dict slot
# One processed event id: the string (49 + its length), its slot in a chunk tuple (8) and its share
# of the chunk's frozenset (~74): measured 123 + length, so 159 for a 36-character UUID, 131 for 8
# characters and 187 for 64 (the longest identifier allowed).
PROCESSED_ID_BYTES = 160


def estimate_state_bytes(state: MemberState) -> int:
    """A cheap (O(1)), deterministic estimate of the memory a member state holds on its own."""
    return (STATE_BYTES
            + LICENSE_BYTES * len(state.licenses)
            + TITLE_YEAR_COUNT_BYTES * len(state.title_year_downloads)
            + MONTH_COUNT_BYTES * len(state.month_downloads)
            + PROCESSED_ID_BYTES * len(state.processed))


class MemberCache(Generic[V]):
    def __init__(self, capacity: int, max_bytes: int | None = None, size_of: Callable[[V], int] | None = None,
                 entry_bytes: int = ENTRY_BYTES):
        """At most ``capacity`` entries and, with ``max_bytes``, at most that many bytes as
        ``size_of(value) + entry_bytes`` counts them per entry."""
        if capacity < 1:
            raise ValueError("cache capacity must be at least 1")
        if max_bytes is not None and (max_bytes < 1 or size_of is None):
            raise ValueError("a byte budget must be positive and needs size_of to weigh the values")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.entry_bytes = entry_bytes if size_of is not None else 0
        self._size_of = size_of
        self._bytes = 0
        self._entries: OrderedDict[str, tuple[int, V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """The estimated bytes held (0 when the cache does not weigh its values)."""
        return self._bytes

    def get(self, member_id: str) -> V | None:
        entry = self._entries.get(member_id)
        if entry is None:
            return None
        self._entries.move_to_end(member_id)
        return entry[1]

    def put(self, member_id: str, partition: int, value: V) -> None:
        size = self._size_of(value) + self.entry_bytes if self._size_of is not None else 0
        old = self._entries.pop(member_id, None)
        if old is not None:
            self._bytes -= old[2]
        self._entries[member_id] = (partition, value, size)
        self._bytes += size
        while self._entries and (len(self._entries) > self.capacity
                                 or (self.max_bytes is not None and self._bytes > self.max_bytes)):
            _, (_, _, evicted) = self._entries.popitem(last=False)
            self._bytes -= evicted

    def drop(self, member_id: str) -> None:
        entry = self._entries.pop(member_id, None)
        if entry is not None:
            self._bytes -= entry[2]

    def drop_partitions(self, partitions: set[int]) -> int:
        doomed = [m for m, (p, _, _) in self._entries.items() if p in partitions]
        for m in doomed:
            self.drop(m)
        return len(doomed)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


def member_state_cache(max_entries: int, max_bytes: int | None) -> MemberCache[MemberState]:
    """The cache the decider and the projector keep: bounded by entries and by estimated bytes."""
    return MemberCache(max_entries, max_bytes, estimate_state_bytes)


def loaded_state_cache(max_entries: int, max_bytes: int | None) -> MemberCache[LoadedState]:
    """The decider's cache: states with their rows since the last snapshot, bounded likewise."""
    return MemberCache(max_entries, max_bytes, lambda loaded: estimate_state_bytes(loaded.state))
