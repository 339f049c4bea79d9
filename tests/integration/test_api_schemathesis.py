"""Schemathesis against the ASGI app: no 5xx, responses conform to /openapi.json, auth enforced.

The app reads a random namespace (test-only pointer key) holding a few member views, among them the
ids of the OpenAPI examples (``m-1``, ``t-1``), so the example phase reaches real 200 answers. The
timeline endpoints read an in-memory event store holding the same members' histories.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest
import schemathesis

from app.adapters.memory.event_store import InMemoryEventStore
from app.adapters.redis.view_store import RedisViewStore
from app.bootstrap import redis_client, redis_sync_client
from app.config import Settings
from app.domain.decide import step
from app.domain.events import DownloadEvent, LicenseAcquired, LicenseReleased, PlanChanged
from app.domain.history import Source, to_stored
from app.domain.state import MemberState
from app.entrypoints.api import create_api

pytestmark = pytest.mark.stack

TOKEN = "schemathesis-token"
T0 = 1_710_028_800_000  # 2024-03-10T00:00Z
DAY = 86_400_000


def member(member_id: str, rows: list | None = None) -> MemberState:
    """The member's state; its stored decisions are appended to ``rows`` when given."""
    state = MemberState.empty(member_id)
    payloads = [
        PlanChanged("family", 2, 3, 20),
        LicenseAcquired("l-1", "d-1", "t-1", "s-1", T0 + 30 * DAY, 5, 3, 2),
        LicenseAcquired("l-2", "d-2", "t-2", "s-1", T0 + DAY, None, None, None),
        LicenseAcquired("l-3", "d-2", "t-1", "s-2", T0 + 2 * DAY, 5, None, 0),
        LicenseReleased("l-3", "REVOKED"),
    ]
    for i, payload in enumerate(payloads):
        event = DownloadEvent(f"e{i}", member_id, T0 + i * 1000, "schemathesis", payload)
        decision, state = step(state, event)
        if rows is not None:
            rows += to_stored(decision, event, state, Source("downloads.events", 0, i))
    return state


def event_store() -> InMemoryEventStore:
    store = InMemoryEventStore()
    for member_id in ("m-1", "m-2", "0"):
        rows: list = []
        member(member_id, rows)
        asyncio.run(store.append({member_id: rows}, {member_id: (0, 0)}))
    return store


async def _write(ns: str, states: list[MemberState]) -> None:
    client = redis_client(SETTINGS)
    try:
        await RedisViewStore(client, ns).write_many(states)
    finally:
        await client.aclose()


# Built at import: schemathesis' lazy `from_fixture` loader touches `request.node._nodeid`, which
# pytest 9 no longer has. Building the app does no I/O; the views are written by the fixture below.
SETTINGS = Settings().model_copy(update={"api_tokens": TOKEN})
NAMESPACE = f"test-schemathesis-{uuid.uuid4().hex[:12]}"
POINTER = f"test:{NAMESPACE}:active-namespace"
APP = create_api(SETTINGS, pointer_key=POINTER, history=event_store())

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(max_examples=30)
schema.config.update(headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module", autouse=True)
def views():
    sync = redis_sync_client(SETTINGS)
    sync.set(POINTER, NAMESPACE)
    asyncio.run(_write(NAMESPACE, [member("m-1"), member("m-2"), member("0")]))
    yield
    schemathesis.python.asgi.shutdown_lifespans()  # closes the app's Redis client
    sync.delete(POINTER, *sync.scan_iter(match=f"ledger:{NAMESPACE}:*", count=1000))
    sync.close()


@schema.parametrize()
def test_api_conforms_to_its_schema(case):
    case.call_and_validate()

