"""The baseline: a naive Faust agent doing the pipeline's work one event at a time, awaiting each step.

For every input message, in order: decode and validate (a bad one is published to the DLQ and
acknowledged), load the member's state from the event store (latest snapshot plus the events after
it: no cache), decide with the same pure domain, append the decision conditionally, snapshot every
``snapshot_every`` accepted events, publish the ledger entry (or the rejection) and wait for the
acknowledgement, then write the Redis view and the Cassandra read models. Same adapters, same
stores, same guarantees per event, none of the batching, caching or concurrency of the real worker.
It does not save a durable input position per event (the real decider saves one per batch), which
only makes the baseline faster.

Run as its own process: ``python -m app.bench.naive_baseline --stats FILE`` with the ``LEDGER_*``
variables of the pipeline; it writes ``{"processed", "first", "last"}`` (wall-clock seconds) to FILE
twice a second, which is how the bench measures its rate.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path


class NaiveAgent:
    """The per-event work (no Faust here, so it can be driven directly as well)."""

    def __init__(self, settings, store, producer, views, read_models):
        self.settings = settings
        self.store = store
        self.producer = producer
        self.views = views
        self.read_models = read_models
        self.processed = 0
        self.first: float | None = None
        self.last: float | None = None

    async def handle(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        from app.adapters.avro.errors import DecodeError
        from app.adapters.avro.mapping import Source, decode_event, encode_ledger_entry, encode_rejection
        from app.adapters.kafka.producer import OutRecord
        from app.domain.decide import Accepted, Rejected, step
        from app.domain.state import ProcessedIds
        from app.domain.validation import MalformedEvent, validate
        from app.service.history import to_stored
        from app.service.ports import ACCEPTED

        if self.first is None:
            self.first = time.time()
        s = self.settings
        try:
            if value is None:
                raise DecodeError("truncated", "empty message value")
            event = decode_event(value)
            validate(event)
            if key is not None and key != event.member_id.encode():
                raise MalformedEvent("key_mismatch", "message key is not the member_id")
        except (DecodeError, MalformedEvent) as exc:
            code = getattr(exc, "code", "error")
            await self.producer.publish([OutRecord(s.dlq_topic, key, value, (
                ("error.code", str(code).encode()), ("source.topic", topic.encode()),
                ("source.partition", str(partition).encode()), ("source.offset", str(offset).encode())))])
            self._done()
            return

        member_id = event.member_id
        member_key = member_id.encode()
        source = Source(topic, partition, offset)
        state = await self.store.load(member_id)
        decision, new_state = step(state, event)
        if isinstance(decision, Accepted):
            await self.store.append({member_id: to_stored(decision, event, new_state, source)})
            if new_state.seq // s.snapshot_every > state.seq // s.snapshot_every:
                await self.store.save_snapshot(new_state)
            for r in decision.recorded:
                await self.producer.publish([OutRecord(s.ledger_topic, member_key, encode_ledger_entry(r, source))])
            lean = replace(new_state, processed=ProcessedIds())
            await self.views.write_many([lean])
            before = replace(state, processed=ProcessedIds()) if state.seq > 0 else None
            await self.read_models.write_many([lean], {member_id: before} if before is not None else None)
        elif isinstance(decision, Rejected):
            await self.store.append({member_id: to_stored(decision, event, new_state, source)})
            await self.producer.publish([OutRecord(s.rejections_topic, member_key, encode_rejection(
                event, str(decision.reason), decision.detail, decision.clock, source))])
        else:  # a duplicate: publish its stored outcome again
            stored = await self.store.find(member_id, event.event_id)
            if stored is not None:
                if stored.kind == ACCEPTED:
                    record = OutRecord(s.ledger_topic, member_key, encode_ledger_entry(stored.recorded, stored.source))
                else:
                    record = OutRecord(s.rejections_topic, member_key, encode_rejection(
                        stored.event, stored.reason, stored.detail, stored.clock, stored.source))
                await self.producer.publish([record])
        self._done()

    def _done(self) -> None:
        self.processed += 1
        self.last = time.time()

    def stats(self) -> dict:
        return {"processed": self.processed, "first": self.first, "last": self.last, "pid": os.getpid()}


def create_app(settings, resources, stats_path: Path):
    from app.adapters.cassandra.read_models import CassandraReadModels
    from app.adapters.redis.view_store import DEFAULT_NAMESPACE, ViewStore
    from app.entrypoints.worker.faust_app import new_faust_app

    app = new_faust_app(settings, f"{settings.consumer_group}-naive")
    agent = NaiveAgent(settings, resources.store, resources.producer,
                       ViewStore(resources.redis, DEFAULT_NAMESPACE),
                       CassandraReadModels(resources.session, settings.cassandra_keyspace, DEFAULT_NAMESPACE))
    topic = app.topic(settings.events_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")

    @app.agent(topic, name="naive")
    async def naive(stream):
        async for event in stream.events():
            m = event.message
            await agent.handle(m.topic, m.partition, m.offset, m.key, m.value)

    @app.timer(0.5)
    async def write_stats():
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(agent.stats()))
        tmp.replace(stats_path)

    return app


def main(argv: list[str] | None = None) -> int:
    import faust

    from app.config import Settings
    from app.entrypoints.worker.resources import Resources

    parser = argparse.ArgumentParser(description="naive one-event-at-a-time baseline agent")
    parser.add_argument("--stats", required=True, type=Path)
    args = parser.parse_args(argv)
    settings = Settings()
    resources = Resources.open(settings)
    app = create_app(settings, resources, args.stats)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        resources.close()
    return 0


# --- the bench side -----------------------------------------------------------------------


def run(env, pipeline, workload, *, seconds: float, echo=print) -> dict:
    """Start the naive agent on the pre-published workload; its rate over ``seconds`` (or until done)."""
    import sys

    from app.bench.env import BenchError, CpuMeter

    stats_path = env.work_dir / f"naive-{pipeline.label}.json"
    stats_path.unlink(missing_ok=True)
    proc = env.spawn(f"naive-{pipeline.label}", [sys.executable, "-m", "app.bench.naive_baseline",
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
