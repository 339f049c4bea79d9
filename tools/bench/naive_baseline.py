"""The baseline: a naive Faust agent doing the pipeline's work one event at a time, awaiting each step.

For every input message, in order: decode and validate (a bad one is published to the DLQ and
acknowledged), load the member's state from the event store (latest snapshot plus the events after
it: no cache), decide with the same pure domain, append the decision conditionally, snapshot every
``snapshot_every`` accepted events, publish the ledger entry (or the rejection) and wait for the
acknowledgement, then write the Redis view and the Cassandra read models. Same adapters, same
stores, same guarantees per event, none of the batching, caching or concurrency of the real worker.
It does not save a durable input position per event (the real decider saves one per batch), which
only makes the baseline faster.

Run as its own process: ``python -m tools.bench.naive_baseline --stats FILE`` with the ``LEDGER_*``
variables of the pipeline; it writes ``{"processed", "first", "last"}`` (wall-clock seconds) to FILE
twice a second, which is how the bench measures its rate.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


class NaiveAgent:
    """The per-event work (no Faust here, so it can be driven directly as well)."""

    def __init__(self, settings, store, outbox, views, read_models, codec):
        self.settings = settings
        self.store = store
        self.outbox = outbox
        self.views = views
        self.read_models = read_models
        self.codec = codec
        self.processed = 0
        self.first: float | None = None
        self.last: float | None = None

    async def handle(self, message) -> None:
        from app.domain.decide import Accepted, Duplicate, step
        from app.domain.history import Source, to_stored
        from app.domain.validation import MalformedEvent
        from app.domain.views import lean
        from app.service.decider import decode_input
        from app.service.ports import DeadLetter, DecodeError

        if self.first is None:
            self.first = time.time()
        s = self.settings
        try:
            event = decode_input(self.codec, message, s.max_future_skew_ms)  # the decider's own checks
        except DecodeError as exc:
            await self.outbox.publish([], [DeadLetter(message, "undecodable", exc.code, exc.message)])
            self._done()
            return
        except MalformedEvent as exc:
            await self.outbox.publish([], [DeadLetter(message, "malformed", exc.code, exc.detail)])
            self._done()
            return

        member_id = event.member_id
        source = Source(message.topic, message.partition, message.offset)
        state = await self.store.load(member_id)
        decision, new_state = step(state, event)
        if isinstance(decision, Duplicate):  # publish its stored outcome again
            stored = await self.store.find(member_id, event.event_id)
            if stored is not None:
                await self.outbox.publish([(member_id, stored)], [])
            self._done()
            return
        rows = to_stored(decision, event, new_state, source)
        await self.store.append({member_id: rows}, {member_id: state.position})
        if isinstance(decision, Accepted) and new_state.seq // s.snapshot_every > state.seq // s.snapshot_every:
            await self.store.save_snapshot(new_state)
        for row in rows:
            await self.outbox.publish([(member_id, row)], [])
        if isinstance(decision, Accepted):
            view = lean(new_state)
            await self.views.write_many([view])
            await self.read_models.write_many([view])
        self._done()

    def _done(self) -> None:
        self.processed += 1
        self.last = time.time()

    def stats(self) -> dict:
        return {"processed": self.processed, "first": self.first, "last": self.last, "pid": os.getpid()}


def create_app(settings, stores, producer, stats_path: Path):
    from app.adapters.kafka.outbox import KafkaOutbox
    from app.bootstrap import output_topics
    from app.entrypoints.worker.faust_app import new_faust_app, to_input_message

    app = new_faust_app(settings, f"{settings.consumer_group}-naive")
    namespace = "v1"
    agent = NaiveAgent(settings, stores.event_store(), KafkaOutbox(producer, output_topics(settings)),
                       stores.views(namespace), stores.read_models(namespace), stores.codec)
    topic = app.topic(settings.events_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")

    @app.agent(topic, name="naive")
    async def naive(stream):
        async for event in stream.events():
            await agent.handle(to_input_message(event))

    @app.timer(0.5)
    async def write_stats():
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(agent.stats()))
        tmp.replace(stats_path)

    return app


def main(argv: list[str] | None = None) -> int:
    from app import bootstrap
    from app.config import Settings
    from app.entrypoints.worker.faust_app import run_worker

    parser = argparse.ArgumentParser(description="naive one-event-at-a-time baseline agent")
    parser.add_argument("--stats", required=True, type=Path)
    args = parser.parse_args(argv)
    settings = Settings()
    stores = bootstrap.Stores.open(settings)
    producer = bootstrap.producer(settings)
    app = create_app(settings, stores, producer, args.stats)
    try:
        run_worker(app, "warning", settings.stop_timeout_s)  # the pipeline's own Faust worker
    finally:
        producer.close()
        stores.cluster.shutdown()
    return 0



# --- the bench side -----------------------------------------------------------------------


def run(env, pipeline, workload, *, seconds: float, echo=print) -> dict:
    """Start the naive agent on the pre-published workload; its rate over ``seconds`` (or until done)."""
    import sys

    from tools.bench.env import BenchError, CpuMeter

    stats_path = env.work_dir / f"naive-{pipeline.label}.json"
    stats_path.unlink(missing_ok=True)
    proc = env.spawn(f"naive-{pipeline.label}", [sys.executable, "-m", "tools.bench.naive_baseline",
                                                   "--stats", str(stats_path)], pipeline.env())
    total = workload.size

    def read() -> dict:
        try:
            return json.loads(stats_path.read_text())
        except (OSError, ValueError):
            return {"processed": 0, "first": None, "last": None}

    started = time.monotonic()
    while not read().get("first"):
        proc.check_alive()
        if time.monotonic() - started > 120:
            raise BenchError(f"the naive agent processed nothing within 120 s:\n{proc.tail()}")
        time.sleep(0.1)
    meter = CpuMeter({"naive": proc.pid, **env.stack}).start()
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        proc.check_alive()
        if read()["processed"] >= total:
            break
        time.sleep(0.5)
    time.sleep(0.6)  # one more stats write
    shares = meter.stop()
    stats = read()
    status = proc.status()
    proc.stop(15)
    elapsed = (stats["last"] or 0) - (stats["first"] or 0)
    processed = stats["processed"]
    rate = (processed - 1) / elapsed if elapsed > 0 and processed > 1 else 0.0
    echo(f"  naive agent: {processed:,} events in {elapsed:.1f} s ({rate:,.1f} events/s)")
    return {
        "events_published": total,
        "events_processed": processed,
        "seconds": round(elapsed, 3),
        "rate": rate,
        "cpu_share": shares,
        "vm_hwm_bytes": status.get("VmHWM"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
