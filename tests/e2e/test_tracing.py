"""Tracing end to end: events published by the traced publisher, a real `ledger worker` writing its
spans to a file (LEDGER_TRACING=file:PATH). Each event is one trace: the publish span, the
decider's span for the event with a child per stage, the projector's span continuing it from the
ledger entry's traceparent, and its view write. The worker also exports the publish-to-view latency."""
from __future__ import annotations

import json
import re
import uuid

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import bootstrap
from app.adapters.kafka.publisher import EventPublisher
from tests.support.domain_builders import T0, acquire, event, plan
from tests.support.helpers import scrape, wait_until
from tests.support.pipeline import expected_states
from tools.stack.process import free_port

DECIDER_STAGES = {"decider.decode", "decider.load", "decider.decide", "decider.append", "decider.snapshot",
                  "decider.publish"}
PROJECTOR_STAGES = {"projector.decode", "projector.load", "projector.apply", "projector.write"}


def read_spans(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_each_event_is_one_connected_trace_from_publish_to_the_view_write(pipeline):
    spans_file = pipeline.tmp / "worker-spans.jsonl"
    metrics_port = free_port()
    worker = pipeline.start_worker(metrics_port=metrics_port, LEDGER_TRACING=f"file:{spans_file}")

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    members = [f"{uuid.uuid4().hex[:6]}-t{i}" for i in range(2)]
    events = [e for m in members for e in (event(plan(device_limit=2), at=T0, member=m),  # both accepted
                                           event(acquire(f"l-{m}", device="d1"), at=T0 + 1, member=m))]
    publisher = EventPublisher(bootstrap.kafka_connection(pipeline.settings), pipeline.settings.events_topic,
                               instrument=bootstrap.producer_instrumentation(pipeline.settings, provider))
    try:
        publisher.publish(events)
    finally:
        publisher.close()
    states, outcomes = expected_states(events)
    assert set(outcomes.values()) == {"accepted"}
    pipeline.wait_for_views(states)

    publishes = [s for s in exporter.get_finished_spans() if s.name.endswith(pipeline.settings.events_topic)
                 or pipeline.settings.events_topic in s.name]
    assert len(publishes) == len(events), [s.name for s in exporter.get_finished_spans()]
    roots = {f"0x{s.context.trace_id:032x}": f"0x{s.context.span_id:016x}" for s in publishes}
    assert len(roots) == len(events)

    def complete() -> list[dict] | None:
        spans = read_spans(spans_file)
        written = {s["context"]["trace_id"] for s in spans if s["name"] == "projector.write"}
        return spans if set(roots) <= written else None

    spans = wait_until(complete, 60, interval=0.5, message="the worker's spans of every event")
    for trace_id, publish_span in roots.items():
        in_trace = [s for s in spans if s["context"]["trace_id"] == trace_id]
        [decided] = [s for s in in_trace if s["name"] == "decider"]
        [projected] = [s for s in in_trace if s["name"] == "projector"]
        assert decided["parent_id"] == publish_span and decided["kind"] == "SpanKind.CONSUMER"
        assert projected["parent_id"] == decided["context"]["span_id"]
        assert {s["name"] for s in in_trace if s["parent_id"] == decided["context"]["span_id"]} - {"projector"} \
            == DECIDER_STAGES
        assert {s["name"] for s in in_trace if s["parent_id"] == projected["context"]["span_id"]} == PROJECTOR_STAGES
        [write] = [s for s in in_trace if s["name"] == "projector.write"]
        [published] = [s for s in in_trace if s["name"] == "decider.publish"]
        # the projector can read a ledger entry only once the decider began to publish it (the
        # decider's span itself ends later, after the input position is saved)
        assert write["start_time"] >= published["start_time"]

    # the ledger entries carry the trace on, and the input's timestamp for the latency metric
    for message in pipeline.consume_all(pipeline.settings.ledger_topic):
        headers = dict(message.headers())
        assert headers["traceparent"].decode().split("-")[1] in {t.removeprefix("0x") for t in roots}
        assert int(headers["source.timestamp"]) > 0
    count = wait_until(lambda: _histogram_count(scrape(metrics_port), "ledger_publish_to_view_seconds"), 30,
                       interval=0.5, message="the publish-to-view histogram")
    assert count >= len(events)
    assert worker.alive


def _histogram_count(text: str, name: str) -> float:
    match = re.search(rf"^{name}_count (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0
