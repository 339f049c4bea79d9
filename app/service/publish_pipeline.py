"""The decider's pipeline: batch N+1 is decided while batch N publishes.

A batch's chain of round trips (load, lookups, conditional append, publish, progress) used to run
one after the other, and the next batch waited for all of it. Here the publish and the progress
write of batch N overlap the decision of batch N+1. Order of effects, for consecutive batches:

1. N is decided and appended (`Decider.decide`): its decisions are durable and its members' states
   are in the cache;
2. N's publish and progress (`Decider.publish`) start in the background and ``submit`` returns: the
   caller may acknowledge N's input messages and take the next batch;
3. N+1 is decided against the cached states of 1; its conditional append expects the heads N left;
4. N+1's publish starts only once N's publish *and* N's progress are done, so each member's ledger
   entries are produced in seq order and the durable progress only moves forward.

Why acknowledging N's input before N is published loses nothing: the durable progress of N is
saved only after N's outputs are acknowledged, and on every assignment the worker starts each input
partition at its durable progress when the committed offset is ahead of it. A crash, a stop or a
revocation with N's publish in flight therefore starts again at N, whose events are duplicates of
their stored decisions: their outcomes are published again. A revocation and a stop first wait for
the publish in flight (``settle``), and cancel it after the wait's timeout, so that a worker never
saves the progress of partitions it gave up after their next owner did. When a publish cut short had
produced some of its entries, the ledger holds them twice, and the projectors drop an entry by its
seq, as after any crash between a publish and its progress.

A failed publish is retried by the ``publish`` it was given (with backoff) until it succeeds; the
next batch's publish waits for it, so outputs never overtake each other.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from app.service.decider import DecidedBatch
from app.service.ports import InputMessage

log = logging.getLogger(__name__)

CANCEL_WAIT_S = 1.0  # how long a cancelled publish gets to unwind


class PublishPipeline:
    def __init__(self, decide: Callable[[list[InputMessage]], Awaitable[DecidedBatch]],
                 publish: Callable[[DecidedBatch], Coroutine[Any, Any, object]]):
        """``decide``: steps 1 to 4 of a batch, retried until done; ``publish``: steps 5 and 6 of a
        decided batch, retried until done (both as `Decider.decide` and `Decider.publish`)."""
        self._decide = decide
        self._publish = publish
        self._tail: asyncio.Task[object] | None = None  # the publish of the latest batch decided

    async def submit(self, messages: list[InputMessage]) -> None:
        """Decide the batch, then start its publish once the previous batch's is done."""
        decided = await self._decide(messages)
        try:
            await self._previous()
        except BaseException as exc:  # a stop: the batch is decided again by the next owner
            decided.end_trace(exc)
            raise
        self._tail = asyncio.get_running_loop().create_task(self._publish(decided))

    async def settle(self, timeout_s: float) -> bool:
        """Wait for the publish in flight, if any, at most ``timeout_s``; then cancel it, so that a
        worker that gave its partitions up never saves their progress after the next owner did.
        True when it finished."""
        tail = self._tail
        if tail is None:
            return True
        done, _ = await asyncio.wait({tail}, timeout=timeout_s)
        if self._tail is tail:
            self._tail = None
        if not done:
            log.warning("the publish in flight did not finish within %.0fs; cancelled: its batch is decided "
                        "again where its partitions go next", timeout_s)
            tail.cancel()
            await asyncio.wait({tail}, timeout=CANCEL_WAIT_S)
            return False
        if tail.cancelled():
            return False
        if (error := tail.exception()) is not None:
            log.error("the publish in flight failed (%s: %s); its batch is decided again where its partitions "
                      "go next", type(error).__name__, error)
            return False
        return True

    async def _previous(self) -> None:
        tail = self._tail
        if tail is not None:
            try:
                # Shielded: a submit cancelled while it waits (a stop) leaves the publish running.
                await asyncio.shield(tail)
            finally:
                if self._tail is tail and tail.done():
                    self._tail = None
