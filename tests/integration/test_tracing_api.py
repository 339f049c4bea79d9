"""The read API's traces (FastAPI and Redis instrumentation) against the real Redis: a server span
per request, the Redis commands it ran as its children; probes are not traced."""
from __future__ import annotations

import dataclasses
import uuid

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.adapters.redis.view_store import RedisViewStore
from app.bootstrap import redis_sync_client
from app.domain.state import MemberState
from app.entrypoints.api import create_api

pytestmark = pytest.mark.stack

TOKEN = "test-token-trace"


@pytest.fixture
def traced_api(settings):
    ns = f"test-trace-{uuid.uuid4().hex[:12]}"
    pointer = f"test:{ns}:active-namespace"
    sync = redis_sync_client(settings)
    sync.set(pointer, ns)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_api(settings.model_copy(update={"api_tokens": TOKEN}), pointer_key=pointer, namespace_ttl=0.0,
                     tracer_provider=provider)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, app, ns, exporter
    sync.delete(pointer, *sync.scan_iter(match=f"ledger:{ns}:*", count=1000))
    sync.close()
    provider.shutdown()


def test_a_request_is_a_server_span_with_its_redis_commands_as_children(traced_api):
    client, app, ns, exporter = traced_api
    member = f"m-{uuid.uuid4().hex[:8]}"
    state = dataclasses.replace(MemberState.empty(member), seq=1)
    client.portal.call(RedisViewStore(app.state.reader.client, ns).write_many, [state])
    exporter.clear()

    response = client.get(f"/v1/members/{member}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text

    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    assert server.name == "GET /v1/members/{member_id}"
    assert server.attributes.get("http.response.status_code", server.attributes.get("http.status_code")) == 200
    by_id = {s.context.span_id: s for s in spans}
    commands = [s for s in spans if s.kind == SpanKind.CLIENT and s.attributes.get("db.system", s.attributes.get(
        "db.system.name")) == "redis"]
    assert commands, [s.name for s in spans]
    for command in commands:
        assert command.context.trace_id == server.context.trace_id
        chain = command
        while chain.parent is not None and chain.parent.span_id in by_id:
            chain = by_id[chain.parent.span_id]
        assert chain is server


def test_probes_are_not_traced(traced_api):
    client, _, _, exporter = traced_api
    exporter.clear()
    assert client.get("/healthz").status_code == 200
    assert not [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
