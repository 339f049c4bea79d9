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

    async def decide(self, messages):
        self.log.append(f"decide {messages}")
        return messages

    async def publish(self, batch):
        self.log.append(f"publish {batch} starts")
        await self.release.setdefault(batch, asyncio.Event()).wait()
        self.log.append(f"publish {batch} done")

    def let(self, batch):
        self.release.setdefault(batch, asyncio.Event()).set()


async def _until(condition, timeout_s=2.0):
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0)


def test_the_next_batch_is_decided_while_the_previous_one_publishes_and_publishes_after_it():
    async def scenario():
        steps = Steps()
        pipeline = PublishPipeline(steps.decide, steps.publish)
        await pipeline.submit("N")
        await _until(lambda: "publish N starts" in steps.log)
        second = asyncio.create_task(pipeline.submit("N+1"))
        await _until(lambda: "decide N+1" in steps.log)
        for _ in range(10):
            await asyncio.sleep(0)
        assert not second.done() and "publish N+1 starts" not in steps.log  # waits for N's publish
        steps.let("N")
        await second
        await _until(lambda: "publish N+1 starts" in steps.log)
        steps.let("N+1")
        assert await pipeline.settle(1.0)
        return steps.log

    assert asyncio.run(scenario()) == ["decide N", "publish N starts", "decide N+1", "publish N done",
                                       "publish N+1 starts", "publish N+1 done"]


def test_settle_waits_for_the_publish_in_flight_and_a_timeout_leaves_it_running():
    async def scenario():
        steps = Steps()
        pipeline = PublishPipeline(steps.decide, steps.publish)
        assert await pipeline.settle(0.01)  # nothing in flight
        await pipeline.submit("N")
        assert not await pipeline.settle(0.05)
        assert "publish N done" not in steps.log
        steps.let("N")
        assert await pipeline.settle(1.0)
        return steps.log

    assert asyncio.run(scenario())[-1] == "publish N done"


def test_a_submit_cancelled_while_it_waits_for_the_previous_publish_does_not_cancel_that_publish():
    async def scenario():
        steps = Steps()
        pipeline = PublishPipeline(steps.decide, steps.publish)
        await pipeline.submit("N")
        second = asyncio.create_task(pipeline.submit("N+1"))
        await _until(lambda: "decide N+1" in steps.log)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        steps.let("N")
        assert await pipeline.settle(1.0)
        return steps.log

    log = asyncio.run(scenario())
    assert "publish N done" in log and "publish N+1 starts" not in log
