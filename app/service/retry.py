"""Retrying and bounded concurrency, one body for every service.

Every retry loop here has a cap and full jitter, so a fleet of workers that failed together does
not come back in lock-step.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Backoff:
    """Exponential pauses from ``first_s`` up to ``max_s``, each drawn uniformly from [0, bound]."""

    first_s: float = 0.25
    max_s: float = 10.0
    attempt: int = 0

    def next_pause(self) -> float:
        bound = min(self.max_s, self.first_s * 2 ** self.attempt)
        self.attempt += 1
        return random.uniform(bound / 2, bound)

    def reset(self) -> None:
        self.attempt = 0


async def with_retries(call: Callable[[], Awaitable[T]], transient: tuple[type[BaseException], ...],
                       attempts: int = 6, first_s: float = 0.25, max_s: float = 8.0) -> T:
    """``await call()``, again after a jittered, growing pause when it fails with a transient error
    (only for idempotent work: reads, and writes fenced by seq); the last failure propagates."""
    backoff = Backoff(first_s, max_s)
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except transient as exc:
            if attempt == attempts:
                raise
            pause = backoff.next_pause()
            log.warning("transient store error (attempt %d of %d), retrying in %.2fs: %s", attempt, attempts, pause, exc)
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")


async def for_chunks(items: Sequence[T], size: int, workers: int, handle: Callable[[Sequence[T]], Awaitable[None]],
                     progress: Callable[[int, int], None] | None = None) -> None:
    """``handle`` every chunk of ``size`` items with at most ``workers`` chunks in flight."""
    chunks = iter([items[i:i + size] for i in range(0, len(items), size)])
    done = 0

    async def worker() -> None:
        nonlocal done
        for chunk in chunks:  # a shared iterator: each chunk goes to exactly one worker
            await handle(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, len(items))

    await asyncio.gather(*(worker() for _ in range(max(1, workers))))
