"""Durable input positions: where a consumer resumes after the messages it has applied."""
from __future__ import annotations

from collections.abc import Iterable

from app.service.ports import InputMessage, ProgressStore


def next_offsets(messages: Iterable[InputMessage]) -> dict[str, dict[int, int]]:
    """Per topic and partition, the offset after the last message: where to resume."""
    by_topic: dict[str, dict[int, int]] = {}
    for m in messages:
        offsets = by_topic.setdefault(m.topic, {})
        offsets[m.partition] = max(offsets.get(m.partition, 0), m.offset + 1)
    return by_topic


async def save_progress(progress: ProgressStore, messages: Iterable[InputMessage]) -> None:
    """Record that every message given was applied (call only once its effects are durable)."""
    for topic, offsets in next_offsets(messages).items():
        await progress.save(topic, offsets)
