"""Tracing in one process: the decider and the projector (in-memory stores) continue the trace an
input message carries, and their outputs carry it on; off, nothing is traced or carried."""
from __future__ import annotations

import asyncio
import os
from unittest import mock

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

from app import bootstrap
from app.adapters.avro.mapping import AvroMessageCodec, encode_event
from app.adapters.kafka.outbox import KafkaOutbox, OutputTopics
from app.adapters.memory.event_store import InMemoryEventStore, InMemoryProgressStore
from app.adapters.memory.projections import InMemoryNamespacePointer, InMemoryReadModels, InMemoryViewStore
from app.adapters.otel.batch_tracer import OtelTracer
from app.adapters.otel.provider import TracingConfigError, tracer_provider
from app.config import Settings
from app.entrypoints import cli
from app.service.decider import Decider
from app.service.member_cache import loaded_state_cache
from app.service.ports import InputMessage
from app.service.projector import Projector
from app.service.tracing import NO_TRACER
from tests.support.domain_builders import T0, acquire, event, plan

TOPICS = OutputTopics("ledger", "rejections", "dlq")
DECIDER_STAGES = ["decider.decode", "decider.load", "decider.decide", "decider.append", "decider.snapshot",
                  "decider.publish"]
PROJECTOR_STAGES = ["projector.decode", "projector.load", "projector.apply", "projector.write"]


class RecordingProducer:
    max_message_bytes = 1_000_000

    def __init__(self):
        self.records = []

    async def publish(self, records):
        self.records += records


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def pipeline(tracer):
    store = InMemoryEventStore()
    producer = RecordingProducer()
    decider = Decider(store, InMemoryProgressStore(), KafkaOutbox(producer, TOPICS), AvroMessageCodec(),
                      loaded_state_cache(100, 2**20), tracer=tracer)
    views, models = InMemoryViewStore(), InMemoryReadModels()
    projector = Projector(store, AvroMessageCodec(), lambda ns: views, lambda ns: models, InMemoryNamespacePointer(),
                          tracer=tracer)
    return decider, projector, producer, views


def published(provider, events):
    """Input messages as a traced publisher sends them: each with the traceparent of its own span."""
    tracer = provider.get_tracer("test-publisher")
    messages = []
    for i, e in enumerate(events):
        with tracer.start_as_current_span(f"publish {i}"):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        messages.append(InputMessage("events", 0, i, e.member_id.encode(), encode_event(e),
                                     tuple((k, v.encode()) for k, v in carrier.items()), T0))
    return messages


def ledger_messages(records):
    return [InputMessage("ledger", 0, i, r.key, r.value, r.headers, T0 + 10) for i, r in enumerate(records)
            if r.topic == "ledger"]


def test_each_event_is_one_connected_trace_from_publish_through_the_decider_and_the_projector(spans):
    provider, exporter = spans
    decider, projector, producer, views = pipeline(OtelTracer(provider))
    events = [event(plan(device_limit=2), at=T0, member="m1"), event(acquire("l1", device="d1"), at=T0 + 1, member="m1"),
              event(plan(device_limit=2), at=T0, member="m2")]
    inputs = published(provider, events)
    asyncio.run(decider.process(inputs))
    ledger = ledger_messages(producer.records)
    assert len(ledger) == 3 and all(dict(m.headers).get("traceparent") for m in ledger)
    asyncio.run(projector.process(ledger))
    assert views.states["m1"].seq == 2

    finished = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    publishes = [s for s in finished if s.name.startswith("publish ")]
    assert len(publishes) == 3 and len({s.context.trace_id for s in publishes}) == 3
    for root in publishes:
        in_trace = [s for s in finished if s.context.trace_id == root.context.trace_id]
        [decided] = [s for s in in_trace if s.name == "decider"]
        [projected] = [s for s in in_trace if s.name == "projector"]
        assert decided.parent.span_id == root.context.span_id
        assert decided.kind == trace.SpanKind.CONSUMER
        assert projected.parent.span_id == decided.context.span_id
        children = {s.name: s for s in in_trace if s.parent is not None and s.parent.span_id == decided.context.span_id
                    and s.name != "projector"}
        assert sorted(children) == sorted(DECIDER_STAGES)
        writes = [s for s in in_trace if s.parent is not None and s.parent.span_id == projected.context.span_id]
        assert sorted(s.name for s in writes) == sorted(PROJECTOR_STAGES)
        # every span of the trace hangs from the publish span
        for s in in_trace:
            chain = s
            while chain.parent is not None:
                chain = by_id[chain.parent.span_id]
            assert chain is root


def test_a_failed_batch_marks_every_message_span_failed(spans):
    provider, exporter = spans
    decider, _, producer, _ = pipeline(OtelTracer(provider))

    async def refuse(records):
        raise RuntimeError("kafka down")

    producer.publish = refuse
    with pytest.raises(RuntimeError):
        asyncio.run(decider.process(published(provider, [event(plan(device_limit=2), at=T0, member="m1")])))
    [decided] = [s for s in exporter.get_finished_spans() if s.name == "decider"]
    assert decided.status.status_code == trace.StatusCode.ERROR
    assert "decider.publish" in {s.name for s in exporter.get_finished_spans()}


def test_untraced_outputs_carry_only_the_input_timestamp():
    decider, _, producer, _ = pipeline(NO_TRACER)
    message = InputMessage("events", 0, 0, b"m1", encode_event(event(plan(device_limit=2), at=T0, member="m1")), (), T0)
    asyncio.run(decider.process([message]))
    [record] = producer.records
    assert record.headers == (("source.timestamp", str(T0).encode()),)


def test_tracing_is_off_unless_configured():
    off = Settings(_env_file=None)
    assert off.tracing_exporter is None
    assert bootstrap.tracer(off, "worker") is NO_TRACER and bootstrap.producer_instrumentation(off) is None
    assert Settings(tracing="off", OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318").tracing_exporter is None
    assert Settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318").tracing_exporter == "otlp"
    assert Settings(tracing="file:/tmp/spans.jsonl").tracing_exporter == "file:/tmp/spans.jsonl"


def test_an_unknown_exporter_or_an_unwritable_file_is_one_line(tmp_path, capsys):
    with pytest.raises(TracingConfigError, match="otlp, console, file:PATH or off"):
        tracer_provider("jaeger", "worker")
    with pytest.raises(ValidationError, match="otlp, console, file:PATH or off"):
        Settings(tracing="jaeger")
    unwritable = f"file:{tmp_path}/missing/spans.jsonl"
    with pytest.raises(TracingConfigError, match="cannot open"):
        tracer_provider(unwritable, "worker")
    lines = tmp_path / "events.jsonl"
    lines.write_text("")
    with mock.patch.dict(os.environ, {"LEDGER_TRACING": unwritable}):
        assert cli.main(["publish", str(lines)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot open" in err and "Traceback" not in err
