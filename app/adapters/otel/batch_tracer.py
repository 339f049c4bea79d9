"""The services' `Tracer` on OpenTelemetry: one trace per message, through a batch.

A batch holds many messages, each with its own trace (the ``traceparent`` header its producer
wrote). A span per batch could be the child of one of them only, so each message gets its own
span instead (``decider`` or ``projector``, kind consumer), the child of the context its headers
carry, and each stage of the batch (``decider.decode``, ``decider.load``, ...) becomes a child
span of every message's span, with the stage's start and end. Every trace so holds the whole
path of its event, and the stages' timings are those of the batch it was in (the attribute
``ledger.batch.size`` says how large). The outputs carry the message span's context on
(`carry`), so the next stage continues the same trace.

The stage spans are made when the batch ends, and only under a message span that is recorded
(sampled); a message without a trace context starts a new trace.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from app.domain.history import Source
from app.service.ports import Headers, InputMessage

TRACER_NAME = "download-ledger"
CONTEXT_HEADERS = ("traceparent", "tracestate")


def _carrier(headers: Headers) -> dict[str, str]:
    return {k: v.decode("latin-1") for k, v in headers if k in CONTEXT_HEADERS and v is not None}


class _BatchTrace:
    def __init__(self, tracer: trace.Tracer, stage: str, messages: Sequence[InputMessage]):
        self._tracer = tracer
        self._stage = stage
        self._stages: list[tuple[str, int, int]] = []
        started = time.time_ns()
        self._spans: list[tuple[Source, Span]] = []
        for m in messages:
            span = tracer.start_span(
                stage, context=propagate.extract(_carrier(m.headers)), kind=SpanKind.CONSUMER, start_time=started,
                attributes={"messaging.system": "kafka", "messaging.destination.name": m.topic,
                            "messaging.kafka.destination.partition": m.partition,
                            "messaging.kafka.message.offset": m.offset, "ledger.batch.size": len(messages)})
            self._spans.append((Source(m.topic, m.partition, m.offset), span))
        self._carried: dict[Source, Headers] | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.time_ns()
        try:
            yield
        finally:
            self._stages.append((name, started, time.time_ns()))

    def carry(self) -> dict[Source, Headers]:
        if self._carried is None:
            self._carried = {}
            for source, span in self._spans:
                carrier: dict[str, str] = {}
                propagate.inject(carrier, context=trace.set_span_in_context(span))
                self._carried[source] = tuple((k, v.encode()) for k, v in carrier.items())
        return self._carried

    def end(self, error: BaseException | None) -> None:
        ended = time.time_ns()
        for _, span in self._spans:
            if not span.is_recording():
                continue
            parent = trace.set_span_in_context(span)
            for name, started, stopped in self._stages:
                self._tracer.start_span(f"{self._stage}.{name}", context=parent, start_time=started).end(stopped)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))
            span.end(ended)


class OtelTracer:
    def __init__(self, provider: trace.TracerProvider):
        self._tracer = provider.get_tracer(TRACER_NAME)

    @contextmanager
    def batch(self, stage: str, messages: Sequence[InputMessage]) -> Iterator[_BatchTrace]:
        batch = _BatchTrace(self._tracer, stage, messages)
        try:
            yield batch
        except BaseException as exc:
            batch.end(exc)
            raise
        batch.end(None)
