"""Write a workload as JSON lines in the `ledger publish` format (`app.adapters.json_events`).

Good, limit-breaking and duplicate events and malformed events become one JSON object per line
(malformed ones are refused by `event_from_json`, as `ledger publish` refuses them). Undecodable
items are raw bytes with no JSON form: they are skipped and counted.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

from app.adapters.json_events import event_to_json
from tools.simulate.workload import Item, ItemKind


@dataclass
class JsonlStats:
    counts: dict[str, int] = field(default_factory=dict)  # items by ItemKind value, written or not
    skipped: int = 0  # undecodable items, not written
    elapsed_s: float = 0.0

    @property
    def items(self) -> int:
        return sum(self.counts.values())

    @property
    def written(self) -> int:
        return self.items - self.skipped

    @property
    def rate(self) -> float:
        return self.items / self.elapsed_s if self.elapsed_s > 0 else 0.0


def item_line(item: Item) -> str | None:
    """The JSON line of an item (without the newline), None for an undecodable one."""
    if item.kind is ItemKind.UNDECODABLE:
        return None
    return json.dumps(event_to_json(item.event), separators=(",", ":"))


def write_jsonl(items: Iterable[Item], out: TextIO, on_progress: Callable[[int], None] | None = None,
                progress_every: int = 10_000) -> JsonlStats:
    started = time.monotonic()
    counts: Counter[str] = Counter()
    skipped = done = 0
    write = out.write
    for item in items:
        counts[item.kind.value] += 1
        line = item_line(item)
        if line is None:
            skipped += 1
        else:
            write(line + "\n")
        done += 1
        if on_progress is not None and done % progress_every == 0:
            on_progress(done)
    out.flush()
    if on_progress is not None:
        on_progress(done)
    return JsonlStats({kind.value: counts[kind.value] for kind in ItemKind}, skipped, time.monotonic() - started)
