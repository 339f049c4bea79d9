"""The tracer provider of a process, from ``Settings.tracing_exporter`` (None: tracing is off and
nothing of OpenTelemetry is set up).

- ``otlp``: OTLP over HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (the exporter reads that and the other
  OTEL_EXPORTER_OTLP_* variables, its timeout included), spans sent in batches from a thread;
- ``console``: each span as JSON on stdout, when it ends;
- ``file:PATH``: each span as one line of JSON appended to PATH when it ends (tests, debugging).

Sampling is the SDK's, from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: parent-based,
always on): ``parentbased_traceidratio`` with a ratio keeps that share of the traces started here
and follows the decision of the traces continued here.
"""
from __future__ import annotations

from typing import IO

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

SERVICE_NAME = "download-ledger"


class TracingConfigError(ValueError):
    pass


def _one_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


def tracer_provider(exporter: str, component: str) -> TracerProvider:
    """``exporter``: otlp | console | file:PATH; ``component``: worker, api, publish (a resource attribute)."""
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME,
                                                        "ledger.component": component}))
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=_one_line)))
    elif exporter.startswith("file:") and exporter.removeprefix("file:"):
        path = exporter.removeprefix("file:")
        try:
            out: IO[str] = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives with the provider
        except OSError as exc:
            raise TracingConfigError(f"LEDGER_TRACING: cannot open {path}: {exc.strerror}") from None
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_one_line)))
    else:
        raise TracingConfigError(f"LEDGER_TRACING must be otlp, console, file:PATH or off, not {exporter!r}")
    return provider
