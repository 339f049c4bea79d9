"""The timeline endpoints of the read API: a member's history (pages, cursor, 404, 422) and the
what-if (flips and both summaries), over the in-memory event store and over the real Cassandra;
with Cassandra down they answer 503 while the Redis endpoints keep serving."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from app.adapters.cassandra.event_store import CassandraEventStore
from app.adapters.json_events import event_to_json
from app.adapters.memory.event_store import InMemoryEventStore
from app.domain.history import ACCEPTED
from app.domain.policy import PlanLimits, Policy
from app.entrypoints.api import create_api
from app.service.whatif import WhatIf
from tests.support.domain_builders import DAY, HOUR, T0, acquire, event, plan, release, renew
from tests.support.histories import decided

pytestmark = pytest.mark.stack

TOKEN = "timeline-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def history_of(member: str):
    """Plan basic (1 device): 9 decisions, 3 of them rejections, one of them at (0, 1)."""
    events = [event(release("nope"), at=T0, member=member),                                   # (0, 1) UNKNOWN_LICENSE
              event(plan(device_limit=1, monthly_limit=5, plan_id="basic"), at=T0 + 1, member=member),
              event(acquire("l1", device="d1", title="t1"), at=T0 + HOUR, member=member),
              event(acquire("l2", device="d2", title="t2"), at=T0 + 2 * HOUR, member=member),  # DEVICE_LIMIT
              event(acquire("l3", device="d3", title="t3"), at=T0 + 3 * HOUR, member=member),  # DEVICE_LIMIT
              event(renew("l1", expires=T0 + 60 * DAY), at=T0 + 4 * HOUR, member=member),
              event(release("l1"), at=T0 + 5 * HOUR, member=member),
              event(acquire("l4", device="d4", title="t4"), at=T0 + 6 * HOUR, member=member),
              event(acquire("l5", device="d4", title="t5"), at=T0 + 7 * HOUR, member=member)]
    _, decisions, state = decided(events, member, topic="downloads.events", partition=3)
    return decisions, state


@pytest.fixture
def make_api(settings):
    opened = []

    def make(history=None, **overrides):
        cfg = settings.model_copy(update={"api_tokens": TOKEN, **overrides})
        app = create_api(cfg, pointer_key=f"test:timeline-{uuid.uuid4().hex[:8]}:active-namespace",
                         history=history)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def memory_api(make_api):
    store = InMemoryEventStore()
    decisions, _ = history_of("m1")
    asyncio.run(store.append({"m1": decisions}, {"m1": (0, 0)}))
    return make_api(history=store), decisions


def pages(client, member: str, limit: int):
    read, params = [], {"limit": limit}
    while True:
        r = client.get(f"/v1/members/{member}/history", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["events"]) <= limit
        read.append(body)
        if body["next"] is None:
            return read
        params = {"limit": limit, **body["next"]}


def expected_event(d) -> dict:
    as_json = event_to_json(d.event)
    return {"seq": d.seq, "sub": d.sub, "outcome": "accepted" if d.kind == ACCEPTED else "rejected",
            "reason": d.reason, "detail": d.detail, "type": as_json["type"], "event_id": d.event.event_id,
            "occurred_at": d.event.occurred_at, "producer": d.event.producer, "clock": d.clock,
            "payload": as_json["payload"],
            "source": {"topic": d.source.topic, "partition": d.source.partition, "offset": d.source.offset}}


@pytest.mark.parametrize("limit", [1, 2, 3, 9, 100])
def test_history_pages_through_every_decision_in_order(memory_api, limit):
    client, decisions = memory_api
    read = pages(client, "m1", limit)
    assert [e for page in read for e in page["events"]] == [expected_event(d) for d in decisions]
    assert len(read) == -(-len(decisions) // limit)  # a last full page already says next: null
    assert read[0]["member_id"] == "m1"


def test_history_rows_carry_outcome_reason_detail_clock_payload_and_source(memory_api):
    client, _ = memory_api
    events = client.get("/v1/members/m1/history", headers=AUTH).json()["events"]
    first, rejected = events[0], events[4]
    assert (first["seq"], first["sub"], first["outcome"], first["reason"]) == (0, 1, "rejected", "UNKNOWN_LICENSE")
    assert (rejected["seq"], rejected["sub"], rejected["reason"]) == (2, 2, "DEVICE_LIMIT")
    assert rejected["detail"] == "device limit 1 reached: devices in use d1"
    assert rejected["payload"]["device_id"] == "d3" and rejected["type"] == "LicenseAcquired"
    assert rejected["clock"] == T0 + 3 * HOUR and rejected["source"] == {"topic": "downloads.events",
                                                                          "partition": 3, "offset": 4}


def test_a_cursor_half_left_out_is_0(memory_api):
    client, decisions = memory_api
    def ids(params):
        return [e["event_id"] for e in client.get("/v1/members/m1/history", params=params, headers=AUTH).json()["events"]]

    everything = [d.event.event_id for d in decisions]
    assert ids({"after_seq": 2}) == ids({"after_seq": 2, "after_sub": 0}) == everything[3:]
    assert ids({"after_sub": 1}) == ids({"after_seq": 0, "after_sub": 1}) == everything[1:]


def test_history_of_an_unknown_member_is_404_and_past_the_end_is_an_empty_page(memory_api):
    client, _ = memory_api
    for params in ({}, {"after_seq": 1, "after_sub": 0}):
        r = client.get("/v1/members/nobody/history", params=params, headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["code"] == "member_not_found"
    r = client.get("/v1/members/m1/history", params={"after_seq": 99, "after_sub": 0}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"member_id": "m1", "events": [], "next": None}


@pytest.mark.parametrize("path, params", [
    ("/v1/members/m1/history", {"limit": 0}),
    ("/v1/members/m1/history", {"limit": 1001}),
    ("/v1/members/m1/history", {"after_seq": -1, "after_sub": 0}),
    ("/v1/members/m1/history", {"after_seq": 1, "after_sub": 2**31}),
    ("/v1/members/bad%20id/history", {}),
])
def test_bad_history_parameters_are_422(memory_api, path, params):
    client, _ = memory_api
    r = client.get(path, params=params, headers=AUTH)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error" and r.json()["error"]["details"]


def test_the_timeline_needs_a_token(memory_api):
    client, _ = memory_api
    assert client.get("/v1/members/m1/history").status_code == 401
    r = client.post("/v1/members/m1/whatif", json={"policy": {}})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_whatif_lists_the_flips_and_both_summaries(memory_api):
    client, _ = memory_api
    body = {"policy": {"plans": {"basic": {"device_limit": 2}}, "titles": {"t1": {"max_renewals": 0}}}}
    r = client.post("/v1/members/m1/whatif", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["events_redecided"] == 9
    flips = [(f["type"], f["recorded"]["reason"] or "accepted", f["whatif"]["reason"] or "accepted")
             for f in out["flips"]]
    assert flips == [("LicenseAcquired", "DEVICE_LIMIT", "accepted"),  # l2 on a second device
                     ("LicenseRenewed", "accepted", "RENEWAL_LIMIT")]  # t1: no renewal allowed
    assert out["flips"][1]["whatif"]["detail"] == "license l1 renewed 0 times, max_renewals 0"
    assert out["flip_count"] == 2 and out["transitions"] == [
        {"recorded": "DEVICE_LIMIT", "whatif": "accepted", "count": 1},
        {"recorded": "accepted", "whatif": "RENEWAL_LIMIT", "count": 1}]
    assert out["at"] == T0 + 7 * HOUR
    assert out["today"]["plan"]["device_limit"] == 1 and out["under_policy"]["plan"]["device_limit"] == 2
    assert (out["today"]["active_downloads"], out["today"]["devices_in_use"]) == (2, 1)
    assert (out["under_policy"]["active_downloads"], out["under_policy"]["devices_in_use"]) == (3, 2)


def test_whatif_with_the_empty_policy_flips_nothing(memory_api):
    client, _ = memory_api
    out = client.post("/v1/members/m1/whatif", json={"policy": {}, "at": T0 + DAY}, headers=AUTH).json()
    assert (out["flip_count"], out["flips"], out["transitions"]) == (0, [], [])
    assert out["today"] == out["under_policy"] and out["at"] == T0 + DAY


def test_whatif_window_and_max_flips(memory_api):
    client, _ = memory_api
    policy = {"plans": {"basic": {"device_limit": 3}}}
    out = client.post("/v1/members/m1/whatif", json={"policy": policy, "max_flips": 1}, headers=AUTH).json()
    # l2 and l3 fit on 3 devices; l5 is then the sixth download of the month (monthly limit 5)
    assert out["flip_count"] == 3 and len(out["flips"]) == 1
    assert {t["whatif"] for t in out["transitions"]} == {"accepted", "MONTHLY_LIMIT"}
    out = client.post("/v1/members/m1/whatif", json={"policy": policy, "from_ms": T0 + 3 * HOUR}, headers=AUTH).json()
    assert out["flip_count"] == 1 and out["events_redecided"] == 5


@pytest.mark.parametrize("body, location", [
    ({}, "body.policy"),
    ({"policy": {"plans": {"basic": {"device_limit": 0}}}}, "body.policy.plans.basic.device_limit"),
    ({"policy": {"plans": {"basic": {"device_limit": None}}}}, "body.policy.plans.basic.device_limit"),
    ({"policy": {"titles": {"bad id": {}}}}, "body.policy.titles.bad id.[key]"),
    ({"policy": {"studio": {}}}, "body.policy.studio"),
    ({"policy": {}, "max_flips": 1001}, "body.max_flips"),
    ({"policy": {}, "from_ms": 2**53}, "body.from_ms"),
    ({"policy": {}, "at": "now"}, "body.at"),
])
def test_bad_whatif_bodies_are_422_naming_the_place(memory_api, body, location):
    client, _ = memory_api
    r = client.post("/v1/members/m1/whatif", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert location in [d["location"] for d in r.json()["error"]["details"]], r.json()


def test_whatif_of_an_unknown_member_is_404(memory_api):
    client, _ = memory_api
    for body in ({"policy": {}}, {"policy": {}, "to_ms": T0}):
        r = client.post("/v1/members/nobody/whatif", json=body, headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["code"] == "member_not_found"
    # a known member whose decisions all come at or after to_ms: nothing re-decided, not unknown
    out = client.post("/v1/members/m1/whatif", json={"policy": {}, "to_ms": T0}, headers=AUTH).json()
    assert (out["events_redecided"], out["flip_count"], out["today"]["seq"]) == (0, 0, 0)


def test_the_openapi_document_has_the_timeline(memory_api):
    client, _ = memory_api
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/members/{member_id}/history" in paths and "/v1/members/{member_id}/whatif" in paths
    assert paths["/v1/members/{member_id}/history"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "503" in paths["/v1/members/{member_id}/whatif"]["post"]["responses"]


# --- the real event store ------------------------------------------------------------------------

def test_history_and_whatif_from_cassandra_equal_the_in_memory_ones(make_api, cassandra, test_keyspace):
    member = f"m-{uuid.uuid4().hex[:10]}"
    decisions, _ = history_of(member)
    asyncio.run(CassandraEventStore(cassandra, test_keyspace).append({member: decisions}, {member: (0, 0)}))
    memory = InMemoryEventStore()
    asyncio.run(memory.append({member: decisions}, {member: (0, 0)}))
    real, twin = make_api(cassandra_keyspace=test_keyspace), make_api(history=memory)
    for limit in (2, 100):
        assert pages(real, member, limit) == pages(twin, member, limit)
    body = {"policy": {"plans": {"basic": {"device_limit": 2}}}}
    got = real.post(f"/v1/members/{member}/whatif", json=body, headers=AUTH)
    assert got.status_code == 200 and got.json() == twin.post(f"/v1/members/{member}/whatif", json=body,
                                                              headers=AUTH).json()
    expected = asyncio.run(WhatIf(memory).member(member, Policy(plans={"basic": PlanLimits(device_limit=2)})))
    assert got.json()["flip_count"] == expected.flip_count > 0


def test_with_cassandra_down_the_timeline_is_503_and_the_views_still_serve(make_api, settings):
    client = make_api(cassandra_port=1)  # nothing listens on port 1
    started = time.monotonic()
    for _ in range(2):  # the second answers at once: no new connection attempt within the retry delay
        r = client.get("/v1/members/m1/history", headers=AUTH)
        assert r.status_code == 503 and r.json()["error"]["code"] == "event_store_unavailable"
        r = client.post("/v1/members/m1/whatif", json={"policy": {}}, headers=AUTH)
        assert r.status_code == 503 and r.json()["error"]["code"] == "event_store_unavailable"
    # the Redis endpoints answer (this member has no view: Redis was asked)
    assert client.get("/v1/members/nobody", headers=AUTH).json()["error"]["code"] == "member_not_found"
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - started < 10
