"""Tracing of the read API with OpenTelemetry's instrumentations (on when LEDGER_TRACING or
OTEL_EXPORTER_OTLP_ENDPOINT is set): a server span per request (FastAPI), with a child span per
Redis command or pipeline it runs (redis-py). The probes and /metrics are not traced."""
from __future__ import annotations

from fastapi import FastAPI

UNTRACED_PATHS = "healthz,readyz,metrics"


def instrument(app: FastAPI, redis_client, provider) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=UNTRACED_PATHS,
                                       exclude_spans=["receive", "send"])  # the ASGI messages: noise here
    RedisInstrumentor.instrument_client(redis_client, tracer_provider=provider)
