"""The decider's pipeline: the next batch is decided while the previous one publishes, and publishes
never overtake each other. Plain asyncio, with decide and publish steps that record when they run."""
from __future__ import annotations

import asyncio

import pytest

from app.service.publish_pipeline import PublishPipeline


class Steps:
    """``decide`` and ``publish`` of batches named by their messages; a publish holds until released."""

    def __init__(self):
        self.log: list[str] = []
        self.release: dict[str, asyncio.Event] = {}
        self.ended: list[BaseException | None] = []  # the traces ended
        self._changed = asyncio.Event()

    def note(self, line):
        self.log.append(line)
        self._changed.set()

    async def until(self, line, timeout_s=2.0):
        async with asyncio.timeout(timeout_s):
            while line not in self.log:
                self._changed.clear()
                await self._changed.wait()

    async def decide(self, messages):
        self.note(f"decide {messages}")
        return Decided(messages, self.ended)

    async def publish(self, batch):
        self.note(f"publish {batch.name} starts")
        await self.release.setdefault(batch.name, asyncio.Event()).wait()
        self.note(f"publish {batch.name} done")

    def let(self, batch):
        self.release.setdefault(batch, asyncio.Event()).set()


class Decided:
    """Stands in for a DecidedBatch: a name, and the trace it ends."""

    def __init__(self, name, ended):
        self.name = name
        self._ended = ended

    def end_trace(self, error):
        self._ended.append(error)


def test_the_next_batch_is_decided_while_the_previous_one_publishes_and_publishes_after_it():
    async def scenario():
        steps = Steps()
        pipeline = PublishPipeline(steps.decide, steps.publish)
        await pipeline.submit("N")
        await steps.until("publish N starts")
        second = asyncio.create_task(pipeline.submit("N+1"))
        await steps.until("decide N+1")
        for _ in range(10):
            await asyncio.sleep(0)
        assert not second.done() and "publish N+1 starts" not in steps.log  # waits for N's publish
        steps.let("N")
        await second
        await steps.until("publish N+1 starts")
        steps.let("N+1")
        assert await pipeline.settle(1.0)
        return steps.log

    assert asyncio.run(scenario()) == ["decide N", "publish N starts", "decide N+1", "publish N done",
                                       "publish N+1 starts", "publish N+1 done"]


def test_settle_waits_for_the_publish_in_flight_and_cancels_it_after_its_timeout():
    """A worker that gave its partitions up must never save their progress after the next owner."""
    async def scenario():
        steps = Steps()
        pipeline = PublishPipeline(steps.decide, steps.publish)
        assert await pipeline.settle(0.01)  # nothing in flight
        await pipeline.submit("N")
        steps.let("N")
        assert await pipeline.settle(1.0)
        await pipeline.submit("N+1")
        assert not await pipeline.settle(0.05)
        assert await pipeline.settle(0.01)  # the cancelled one is gone
        return steps.log

    assert asyncio.run(scenario()) == ["decide N", "publish N starts", "publish N done", "decide N+1",
                                       "publish N+1 starts"]


def test_a_submit_cancelled_while_it_waits_for_the_previous_publish_does_not_cancel_that_publish():
    async def scenario():
        steps = Steps()
        pipeline = PublishPipeline(steps.decide, steps.publish)
        await pipeline.submit("N")
        second = asyncio.create_task(pipeline.submit("N+1"))
        await steps.until("decide N+1")
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        steps.let("N")
        assert await pipeline.settle(1.0)
        return steps

    steps = asyncio.run(scenario())
    assert "publish N done" in steps.log and "publish N+1 starts" not in steps.log
    assert len(steps.ended) == 1 and isinstance(steps.ended[0], asyncio.CancelledError)  # N+1's trace ended


def test_a_publish_that_raised_is_not_waited_for_again():
    async def scenario():
        async def decide(messages):
            return Decided(messages, [])

        async def publish(batch):
            if batch.name == "N":
                raise RuntimeError("a bug")

        pipeline = PublishPipeline(decide, publish)
        await pipeline.submit("N")
        with pytest.raises(RuntimeError):
            await pipeline.submit("N+1")
        await pipeline.submit("N+2")
        assert await pipeline.settle(1.0)

    asyncio.run(scenario())
