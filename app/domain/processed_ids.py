"""The ids of a member's processed events, for duplicate detection.

A persistent (never mutated) insertion-ordered set: `add` returns a new value sharing all sealed
chunks with the old one, so evolving a member state does not copy 10,000 ids per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

PROCESSED_IDS_BOUND = 10_000
_CHUNK = 128
_MAX_CHUNKS = -(-PROCESSED_IDS_BOUND // _CHUNK)  # sealed chunks kept: at least the latest BOUND ids


class ProcessedIds:
    __slots__ = ("_chunks", "_chunk_sets", "_tail")

    def __init__(
        self,
        chunks: tuple[tuple[str, ...], ...] = (),
        chunk_sets: tuple[frozenset[str], ...] = (),
        tail: tuple[str, ...] = (),
    ) -> None:
        self._chunks = chunks
        self._chunk_sets = chunk_sets
        self._tail = tail

    @classmethod
    def of(cls, ids: Iterable[str]) -> ProcessedIds:
        result = cls()
        for event_id in ids:
            result = result.add(event_id)
        return result

    def add(self, event_id: str) -> ProcessedIds:
        if event_id in self:
            return self
        tail = self._tail + (event_id,)
        if len(tail) < _CHUNK:
            return ProcessedIds(self._chunks, self._chunk_sets, tail)
        chunks = self._chunks + (tail,)
        chunk_sets = self._chunk_sets + (frozenset(tail),)
        if len(chunks) > _MAX_CHUNKS:
            chunks, chunk_sets = chunks[1:], chunk_sets[1:]
        return ProcessedIds(chunks, chunk_sets, ())

    @property
    def at_bound(self) -> bool:
        """Whether the set may have let go of ids (it holds about PROCESSED_IDS_BOUND of them): an id
        that is not in it may then still have been processed, and only the event store knows.
        Conservative: true from PROCESSED_IDS_BOUND ids on, a little before the first eviction."""
        return len(self) >= PROCESSED_IDS_BOUND

    def __contains__(self, event_id: object) -> bool:
        if event_id in self._tail:
            return True
        for chunk_set in reversed(self._chunk_sets):
            if event_id in chunk_set:
                return True
        return False

    def __iter__(self) -> Iterator[str]:
        """Oldest first."""
        for chunk in self._chunks:
            yield from chunk
        yield from self._tail

    def __len__(self) -> int:
        return len(self._chunks) * _CHUNK + len(self._tail)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProcessedIds):
            return NotImplemented
        return self._chunks == other._chunks and self._tail == other._tail

    def __hash__(self) -> int:
        return hash((self._chunks, self._tail))

    def __repr__(self) -> str:
        return f"ProcessedIds(<{len(self)} ids, latest {self._tail[-3:] or '-'}>)"
