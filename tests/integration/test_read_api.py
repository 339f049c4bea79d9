"""The read API against the real Redis: every endpoint's statuses and bodies, auth, validation,
`at` across an expiry, readiness, metrics, the namespace switch, and eligibility == decide.

Views are written with ``ViewStore.write_many`` into a random namespace; the app follows a
test-only pointer key to it, so the production keys (``ledger:active-namespace``, ``ledger:v1:*``)
are never touched.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from app.adapters.redis.view_store import RedisViewStore, member_key
from app.bootstrap import redis_sync_client
from app.domain.decide import Accepted, Rejected, decide, step
from app.domain.events import (
    DeviceDeactivated,
    DownloadEvent,
    LicenseAcquired,
    LicenseReleased,
    LicenseRenewed,
    PlanChanged,
)
from app.domain.state import MemberState
from app.entrypoints.api import create_api

pytestmark = pytest.mark.stack

TOKEN = "test-token-a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOUR = 3_600_000
DAY = 24 * HOUR


def ms(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


T0 = ms(2024, 3, 10)


def fold(member_id: str, payloads: list[tuple[int, object]]) -> MemberState:
    """Decide each (occurred_at, payload) in order, as the decider would."""
    state = MemberState.empty(member_id)
    for i, (occurred_at, payload) in enumerate(payloads):
        _, state = step(state, DownloadEvent(f"e{i}", member_id, occurred_at, "test", payload))
    return state


def acquire(license_id, device, title, studio, expires_at, yearly=None, studio_limit=None, max_renewals=None):
    return LicenseAcquired(license_id, device, title, studio, expires_at, yearly, studio_limit, max_renewals)


def sample_state(member_id: str) -> MemberState:
    """plan: 2 devices x 2 downloads, 10 a month; clock T0+4h, seq 7.

    L1 d1/t1/s1 expires T0+1d; L2 d1/t2/s1 renewed to T0+20d; L3 d2/t1/s2 expires T0+10d;
    L4 d2/t3/s2 released. March 2024: 4 acquisitions + 1 renewal.
    """
    return fold(member_id, [
        (T0, PlanChanged("family", 2, 2, 10)),
        (T0, acquire("L1", "d1", "t1", "s1", T0 + DAY)),
        (T0 + 1 * HOUR, acquire("L2", "d1", "t2", "s1", T0 + 10 * DAY, max_renewals=3)),
        (T0 + 2 * HOUR, acquire("L3", "d2", "t1", "s2", T0 + 10 * DAY)),
        (T0 + 3 * HOUR, acquire("L4", "d2", "t3", "s2", T0 + 10 * DAY)),
        (T0 + 3 * HOUR, LicenseReleased("L4", "DELETED")),
        (T0 + 4 * HOUR, LicenseRenewed("L2", T0 + 20 * DAY)),
    ])


@pytest.fixture
def sync_redis(settings):
    client = redis_sync_client(settings)
    yield client
    client.close()


@pytest.fixture
def namespace(sync_redis):
    """A random projection namespace and a test-only pointer key naming it; both removed afterwards."""
    ns = f"test-api-{uuid.uuid4().hex[:12]}"
    pointer = f"test:{ns}:active-namespace"
    sync_redis.set(pointer, ns)
    yield ns, pointer
    keys = [pointer, *sync_redis.scan_iter(match=f"ledger:{ns}:*", count=1000)]
    sync_redis.delete(*keys)


class Api:
    def __init__(self, client: TestClient, app, ns: str, pointer: str):
        self.client, self.app, self.ns, self.pointer = client, app, ns, pointer
        self.redis = app.state.reader.client  # the app's own async client, used on the app's loop

    def write(self, *states: MemberState, ns: str | None = None) -> int:
        store = RedisViewStore(self.redis, ns or self.ns)
        return self.client.portal.call(store.write_many, list(states))

    def get(self, path: str, **kw):
        return self.client.get(path, headers=kw.pop("headers", AUTH), **kw)

    def post(self, path: str, **kw):
        return self.client.post(path, headers=kw.pop("headers", AUTH), **kw)


@pytest.fixture
def make_api(settings, namespace):
    ns, pointer = namespace
    opened = []

    def make(now_ms=None, namespace_ttl: float = 0.0, **overrides) -> Api:
        cfg = settings.model_copy(update={"api_tokens": f"{TOKEN}, test-token-b", **overrides})
        kwargs = {"now_ms": now_ms} if now_ms else {}
        app = create_api(cfg, pointer_key=pointer, namespace_ttl=namespace_ttl, **kwargs)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return Api(client, app, ns, pointer)

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api) -> Api:
    return make_api(now_ms=lambda: T0 + 5 * HOUR)


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# --- summary ---------------------------------------------------------------------------------------

def test_summary_reflects_the_view_at_a_time(api):
    api.write(sample_state("m1"))
    r = api.get("/v1/members/m1", params={"at": T0 + 5 * HOUR})
    assert r.status_code == 200
    assert r.json() == {
        "member_id": "m1",
        "at": T0 + 5 * HOUR,
        "seq": 7,
        "plan": {"plan_id": "family", "device_limit": 2, "downloads_per_device": 2, "monthly_limit": 10},
        "devices_in_use": 2,
        "active_downloads": 3,
        "active_by_device": {"d1": 2, "d2": 1},
        "month": "2024-03",
        "month_downloads": 5,
    }
    after_l1 = api.get("/v1/members/m1", params={"at": T0 + DAY}).json()  # L1 expired
    assert (after_l1["devices_in_use"], after_l1["active_by_device"]) == (2, {"d1": 1, "d2": 1})
    after_l3 = api.get("/v1/members/m1", params={"at": T0 + 10 * DAY}).json()  # L3 expired
    assert (after_l3["devices_in_use"], after_l3["active_by_device"]) == (1, {"d1": 1})


def test_summary_defaults_to_now_and_counts_the_month_of_at(api):
    api.write(sample_state("m1"))
    now = api.get("/v1/members/m1").json()
    assert now["at"] == T0 + 5 * HOUR  # the injected clock
    assert (now["devices_in_use"], now["active_downloads"]) == (2, 3)
    april = api.get("/v1/members/m1", params={"at": ms(2024, 4, 1)}).json()
    assert (april["month"], april["month_downloads"], april["active_downloads"]) == ("2024-04", 0, 0)
    assert april["active_by_device"] == {}


def test_unknown_member_is_404(api):
    api.write(sample_state("m1"))
    for path in ("/v1/members/nobody", "/v1/members/nobody/licenses", "/v1/members/nobody/titles/t1/downloads"):
        assert_error(api.get(path), 404, "member_not_found")


# --- licenses --------------------------------------------------------------------------------------

def test_licenses_across_an_expiry(api):
    api.write(sample_state("m1"))

    def states(at):
        r = api.get("/v1/members/m1/licenses", params={"at": at})
        assert r.status_code == 200
        return {lic["license_id"]: lic["state"] for lic in r.json()["licenses"]}

    before = {"L1": "active", "L2": "active", "L3": "active", "L4": "released"}
    assert states(T0 + DAY - 1) == before
    assert states(T0 + DAY) == {**before, "L1": "expired"}  # expired once expires_at <= at


def test_licenses_filter_by_state(api):
    api.write(sample_state("m1"))
    r = api.get("/v1/members/m1/licenses", params={"state": "active", "at": T0 + 2 * DAY})
    body = r.json()
    assert r.status_code == 200
    assert (body["member_id"], body["at"], body["seq"], body["state"]) == ("m1", T0 + 2 * DAY, 7, "active")
    assert body["licenses"] == [
        {"license_id": "L2", "device_id": "d1", "title_id": "t2", "studio_id": "s1",
         "expires_at": T0 + 20 * DAY, "renewals": 1, "max_renewals": 3, "state": "active"},
        {"license_id": "L3", "device_id": "d2", "title_id": "t1", "studio_id": "s2",
         "expires_at": T0 + 10 * DAY, "renewals": 0, "max_renewals": None, "state": "active"},
    ]
    expired = api.get("/v1/members/m1/licenses", params={"state": "expired", "at": T0 + 2 * DAY}).json()
    assert [lic["license_id"] for lic in expired["licenses"]] == ["L1"]
    released = api.get("/v1/members/m1/licenses", params={"state": "released"}).json()
    assert [lic["license_id"] for lic in released["licenses"]] == ["L4"]
    everything = api.get("/v1/members/m1/licenses").json()
    assert everything["state"] is None and len(everything["licenses"]) == 4


# --- title downloads -------------------------------------------------------------------------------

def test_title_downloads_per_year(api):
    api.write(sample_state("m1"))

    def count(title, **params):
        r = api.get(f"/v1/members/m1/titles/{title}/downloads", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    assert count("t1", year=2024) == {"member_id": "m1", "title_id": "t1", "year": 2024, "downloads": 2, "seq": 7}
    assert count("t2", year=2024)["downloads"] == 2  # acquired + renewed: a renewal counts as a download
    assert count("t1", year=2023)["downloads"] == 0
    assert count("unknown-title", year=2024)["downloads"] == 0
    assert count("t1") == {**count("t1", year=2024)}  # default: the year of now (the injected clock)


def test_default_year_is_the_year_of_now(make_api):
    api = make_api(now_ms=lambda: ms(2025, 1, 2))
    api.write(sample_state("m1"))
    assert api.get("/v1/members/m1/titles/t1/downloads").json()["year"] == 2025


# --- eligibility -----------------------------------------------------------------------------------

def would_acquire(**overrides):
    body = {"device_id": "d2", "title_id": "t9", "studio_id": "s9", "expires_at": T0 + 30 * DAY,
            "title_yearly_limit": None, "studio_concurrent_limit": None, "max_renewals": None}
    body.update(overrides)
    return body


@pytest.mark.parametrize("overrides, reason", [
    ({}, None),
    ({"license_id": "L1"}, "LICENSE_ID_CONFLICT"),
    ({"expires_at": T0 + 5 * HOUR}, "ALREADY_EXPIRED"),
    ({"device_id": "d3"}, "DEVICE_LIMIT"),
    ({"device_id": "d1"}, "DEVICE_DOWNLOAD_LIMIT"),
    ({"title_id": "t1", "title_yearly_limit": 2}, "TITLE_YEARLY_LIMIT"),
    ({"studio_id": "s1", "studio_concurrent_limit": 2}, "STUDIO_CONCURRENT_LIMIT"),
])
def test_eligibility_reasons(api, overrides, reason):
    api.write(sample_state("m1"))
    r = api.post("/v1/members/m1/eligibility", json=would_acquire(at=T0 + 5 * HOUR, **overrides))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["eligible"], body["reason"]) == (reason is None, reason)
    assert (body["detail"] is None) == (reason is None)
    assert (body["member_id"], body["seq"], body["at"]) == ("m1", 7, T0 + 5 * HOUR)
    assert body["license_id"] == overrides.get("license_id", body["license_id"]) and body["license_id"]


def test_eligibility_device_limit_and_monthly_limit(api):
    state = fold("m2", [
        (T0, PlanChanged("small", 1, 5, 2)),
        (T0, acquire("A", "d1", "t1", "s1", T0 + DAY)),
        (T0 + HOUR, acquire("B", "d1", "t2", "s1", T0 + DAY)),
    ])
    api.write(state)
    other_device = api.post("/v1/members/m2/eligibility", json=would_acquire(device_id="d2", at=T0 + 2 * HOUR))
    assert other_device.json()["reason"] == "DEVICE_LIMIT"
    assert "devices in use d1" in other_device.json()["detail"]
    same_device = api.post("/v1/members/m2/eligibility", json=would_acquire(device_id="d1", at=T0 + 2 * HOUR))
    assert same_device.json()["reason"] == "MONTHLY_LIMIT"
    next_month = api.post("/v1/members/m2/eligibility", json=would_acquire(device_id="d1", at=ms(2024, 4, 1)))
    assert next_month.json()["eligible"] is True


def test_eligibility_uses_the_member_clock_when_at_is_earlier(api):
    api.write(sample_state("m1"))  # member clock: T0 + 4h
    body = api.post("/v1/members/m1/eligibility", json=would_acquire(at=T0, expires_at=T0 + 3 * HOUR)).json()
    assert (body["at"], body["reason"]) == (T0 + 4 * HOUR, "ALREADY_EXPIRED")


def test_eligibility_of_an_unknown_member_is_against_the_empty_state(api):
    body = api.post("/v1/members/newcomer/eligibility", json=would_acquire()).json()
    assert (body["eligible"], body["reason"], body["seq"], body["at"]) == (True, None, 0, T0 + 5 * HOUR)
    body = api.post("/v1/members/newcomer/eligibility", json=would_acquire(expires_at=T0)).json()
    assert body["reason"] == "ALREADY_EXPIRED"


# --- auth ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer"},
    {"Authorization": f"Bearer {TOKEN}x"},
])
@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/members/m1"),
    ("GET", "/v1/members/m1/licenses"),
    ("GET", "/v1/members/m1/titles/t1/downloads"),
    ("POST", "/v1/members/m1/eligibility"),
    ("GET", "/v1/members/bad%20id"),  # auth is checked before validation: no probing without a token
])
def test_v1_needs_a_configured_bearer_token(api, headers, method, path):
    api.write(sample_state("m1"))
    r = api.client.request(method, path, headers=headers, json=would_acquire() if method == "POST" else None)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_every_configured_token_is_accepted(api):
    api.write(sample_state("m1"))
    assert api.get("/v1/members/m1", headers={"Authorization": "Bearer test-token-b"}).status_code == 200
    assert api.get("/v1/members/m1", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_operational_endpoints_are_open(api):
    api.write(sample_state("m1"))
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 200
    assert api.client.get("/metrics").status_code == 200
    schema = api.client.get("/openapi.json").json()
    assert set(schema["paths"]) >= {"/v1/members/{member_id}", "/v1/members/{member_id}/licenses",
                                    "/v1/members/{member_id}/titles/{title_id}/downloads",
                                    "/v1/members/{member_id}/eligibility", "/healthz", "/readyz", "/metrics"}
    assert schema["paths"]["/v1/members/{member_id}"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


# --- validation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, params", [
    ("/v1/members/bad%20id", {}),
    ("/v1/members/" + "x" * 65, {}),
    ("/v1/members/m%C3%A9", {}),
    ("/v1/members/m1%3Bx/licenses", {}),
    ("/v1/members/m1/titles/t%21/downloads", {}),
    ("/v1/members/m1", {"at": "yesterday"}),
    ("/v1/members/m1", {"at": "1.5"}),
    ("/v1/members/m1", {"at": str(2**63)}),
    ("/v1/members/m1", {"at": ""}),
    ("/v1/members/m1/licenses", {"state": "gone"}),
    ("/v1/members/m1/licenses", {"at": "-"}),
    ("/v1/members/m1/titles/t1/downloads", {"year": "twenty"}),
    ("/v1/members/m1/titles/t1/downloads", {"year": str(10**12)}),
])
def test_bad_identifiers_and_parameters_are_422(api, path, params):
    api.write(sample_state("m1"))
    error = assert_error(api.get(path, params=params), 422, "validation_error")
    assert error["details"] and all(set(d) == {"location", "message"} for d in error["details"])


def test_422_names_the_field(api):
    error = assert_error(api.get("/v1/members/bad%20id"), 422, "validation_error")
    assert error["details"] == [{"location": "path.member_id",
                                 "message": "must be 1-64 characters from [A-Za-z0-9._:-]"}]


@pytest.mark.parametrize("body", [
    {},
    {k: v for k, v in would_acquire().items() if k != "device_id"},
    would_acquire(device_id="bad id"),
    would_acquire(license_id=""),
    would_acquire(expires_at="123"),  # strict: no string-to-int coercion
    would_acquire(expires_at=1.5),
    would_acquire(expires_at=True),
    would_acquire(expires_at=2**63),
    would_acquire(title_yearly_limit=0),
    would_acquire(studio_concurrent_limit=-1),
    would_acquire(max_renewals=-1),
    would_acquire(max_renewals=2**31),
    would_acquire(at="now"),
    would_acquire(download_quality="q" * 33),  # the decider's limit (field_too_long)
    would_acquire(unexpected="field"),
    [1, 2],
    "text",
    None,
])
def test_bad_eligibility_bodies_are_422(api, body):
    assert_error(api.post("/v1/members/m1/eligibility", json=body), 422, "validation_error")


@pytest.mark.parametrize("content, content_type", [
    (b"{not json", "application/json"),
    (b"\xff\xfe", "application/json"),
    (b"\x807\x12q\x0e", "application/json"),  # not UTF-8: FastAPI's 400, answered as 422
    (b"", "application/json"),
    (b"device_id=d1", "application/x-www-form-urlencoded"),
])
def test_undecodable_eligibility_bodies_are_422(api, content, content_type):
    r = api.post("/v1/members/m1/eligibility", content=content,
                 headers={**AUTH, "Content-Type": content_type})
    assert_error(r, 422, "validation_error")


def test_unknown_routes_and_methods_keep_the_error_shape(api):
    assert_error(api.get("/v1/nothing-here"), 404, "not_found")
    assert_error(api.get("/v1/members/m1%2Fx/licenses"), 404, "not_found")  # routed on the decoded path
    assert_error(api.get("/v1/members/"), 404, "not_found")
    r = api.client.delete("/v1/members/m1", headers=AUTH)
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]


def test_a_corrupt_view_is_a_500_without_traceback(api):
    api.client.portal.call(api.redis.hset, member_key(api.ns, "broken"), "state", "{not json")
    error = assert_error(api.get("/v1/members/broken"), 500, "view_corrupt")
    assert "Traceback" not in error["message"]


# --- readiness, Redis down, namespace switch -------------------------------------------------------

def test_readyz_needs_views_in_the_active_namespace(api):
    error = assert_error(api.client.get("/readyz"), 503, "no_views")
    assert api.ns in error["message"]
    api.write(sample_state("m1"), sample_state("m2"))
    assert api.client.get("/readyz").json() == {"status": "ready", "namespace": api.ns, "members": 2}


def test_redis_down_is_503(make_api):
    api = make_api(redis_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    started = time.monotonic()
    assert_error(api.get("/v1/members/m1"), 503, "redis_unavailable")
    assert_error(api.post("/v1/members/m1/eligibility", json=would_acquire()), 503, "redis_unavailable")
    assert_error(api.client.get("/readyz"), 503, "redis_unavailable")
    assert api.client.get("/healthz").status_code == 200  # alive without Redis
    assert time.monotonic() - started < 5


def test_the_api_follows_the_namespace_pointer(make_api, sync_redis):
    api = make_api(namespace_ttl=0.2)
    api.write(sample_state("m1"))
    other = f"{api.ns}-replayed"
    try:
        api.write(fold("m1", [(T0, PlanChanged("replayed", 3, 3, None))]), ns=other)
        assert api.get("/v1/members/m1").json()["plan"]["plan_id"] == "family"
        sync_redis.set(api.pointer, other)
        time.sleep(0.25)
        assert api.get("/v1/members/m1").json()["plan"]["plan_id"] == "replayed"
    finally:
        sync_redis.delete(*sync_redis.scan_iter(match=f"ledger:{other}:*"))


# --- metrics ---------------------------------------------------------------------------------------

def test_metrics_count_requests_by_route_and_status(api):
    api.write(sample_state("m1"))
    api.get("/v1/members/m1")
    api.get("/v1/members/m1")
    api.get("/v1/members/nobody")
    api.get("/v1/members/m1", headers={})
    r = api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    route = 'route="/v1/members/{member_id}"'
    assert f'ledger_api_requests_total{{method="GET",{route},status="200"}} 2.0' in text
    assert f'ledger_api_requests_total{{method="GET",{route},status="404"}} 1.0' in text
    assert f'ledger_api_requests_total{{method="GET",{route},status="401"}} 1.0' in text
    assert f'ledger_api_request_duration_seconds_bucket{{le="0.005",method="GET",{route},status="200"}}' in text


# --- eligibility agrees with the decider -----------------------------------------------------------

IDS = st.sampled_from
BASE = ms(2024, 12, 20)  # event times cross a month and a year boundary


@st.composite
def expiry(draw, occurred_at: int) -> int:
    """Mostly in the future (licenses stay active and limits bite), sometimes already past."""
    if draw(st.integers(0, 7)) == 0:
        return occurred_at - draw(st.integers(0, DAY))
    return occurred_at + draw(st.integers(1, 15 * DAY))


@st.composite
def payloads(draw, occurred_at: int):
    kind = draw(st.sampled_from(["plan", "acquire", "acquire", "acquire", "acquire", "renew", "release", "deactivate"]))
    limit = st.none() | st.integers(1, 3)
    if kind == "plan":
        return PlanChanged(draw(IDS(["p1", "p2"])), draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(limit))
    if kind == "acquire":
        return LicenseAcquired(
            draw(IDS([f"L{i}" for i in range(1, 9)])), draw(IDS(["d1", "d2", "d3"])),
            draw(IDS(["t1", "t2"])), draw(IDS(["s1", "s2"])),
            draw(expiry(occurred_at)), draw(limit), draw(limit), draw(st.none() | st.integers(0, 2)))
    if kind == "renew":
        return LicenseRenewed(draw(IDS(["L1", "L2", "L3"])), draw(expiry(occurred_at)))
    if kind == "release":
        return LicenseReleased(draw(IDS(["L1", "L2", "L3", "L4"])), draw(IDS(["DELETED", "EXPIRED", "REVOKED"])))
    return DeviceDeactivated(draw(IDS(["d1", "d2", "d3"])))


@st.composite
def histories(draw):
    member_id = f"prop-{uuid.uuid4().hex[:16]}"
    state = MemberState.empty(member_id)
    for i in range(draw(st.integers(0, 20))):
        occurred_at = BASE + draw(st.integers(0, 30 * DAY))  # not sorted: late events happen
        event = DownloadEvent(f"e{i}", member_id, occurred_at, "prop", draw(payloads(occurred_at)))
        _, state = step(state, event)
    at = max(state.clock, BASE) + draw(st.integers(-2 * DAY, 5 * DAY))
    limit = st.none() | st.integers(1, 3)
    probe = LicenseAcquired(
        draw(IDS(["L1", "L5", "probe", "probe", "probe", "probe"])), draw(IDS(["d1", "d2", "d3"])),
        draw(IDS(["t1", "t2"])), draw(IDS(["s1", "s2"])),
        draw(expiry(max(at, state.clock))), draw(limit), draw(limit), draw(st.none() | st.integers(0, 2)))
    return state, at, probe


def test_eligibility_agrees_with_decide(make_api):
    api = make_api()

    @hsettings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(histories())
    def check(history):
        state, at, probe = history
        if state.seq:
            api.write(state)  # a member with no accepted event has no view: the API uses the empty state
        body = {name: getattr(probe, name) for name in (
            "license_id", "device_id", "title_id", "studio_id", "expires_at",
            "title_yearly_limit", "studio_concurrent_limit", "max_renewals")}
        r = api.post(f"/v1/members/{state.member_id}/eligibility", json={**body, "at": at})
        assert r.status_code == 200, r.text
        answer = r.json()
        # what the view holds is what the decider would decide on (ids are not part of the view)
        view_state = state if state.seq else MemberState.empty(state.member_id)
        decision = decide(view_state, DownloadEvent("probe", state.member_id, at, "prop", probe))
        if isinstance(decision, Accepted):
            assert (answer["eligible"], answer["reason"], answer["detail"]) == (True, None, None)
        else:
            assert isinstance(decision, Rejected)
            assert (answer["eligible"], answer["reason"], answer["detail"]) == (
                False, str(decision.reason), decision.detail)
        assert answer["seq"] == view_state.seq

    check()


# --- `ledger api` ----------------------------------------------------------------------------------

def test_ledger_api_serves_and_a_taken_port_is_one_line(tmp_path):
    env = {**os.environ, "LEDGER_API_TOKENS": TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "app", "api", "--port", "0", "--log-level", "warning"],
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = server.stderr.readline()
        match = re.search(r"serving http://127\.0\.0\.1:(\d+)", first)
        assert match, first
        port = int(match.group(1))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            assert client.get("/v1/members/m1").status_code == 401
            timings = []
            for _ in range(20):  # keep-alive: TCP_NODELAY must be on, or each answer waits ~40 ms
                started = time.perf_counter()
                client.get("/healthz")
                timings.append(time.perf_counter() - started)
            assert sorted(timings)[10] < 0.02, timings
        taken = subprocess.run([sys.executable, "-m", "app", "api", "--port", str(port)],
                               capture_output=True, text=True, env=env, timeout=60)
        assert taken.returncode == 1
        assert taken.stderr.strip() == f"ledger api: cannot listen on 127.0.0.1:{port}: Address already in use"
    finally:
        server.terminate()
        server.wait(10)


def test_ledger_api_with_two_workers_serves_from_two_processes_on_one_port():
    from tools.bench.env import descendants

    env = {**os.environ, "LEDGER_API_TOKENS": TOKEN}
    server = subprocess.Popen([sys.executable, "-m", "app", "api", "--port", "0", "--log-level", "warning",
                               "--workers", "2"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = server.stderr.readline()
        match = re.search(r"serving http://127\.0\.0\.1:(\d+) with 2 worker", first)
        assert match, first
        port = int(match.group(1))
        deadline = time.monotonic() + 60
        while True:
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                    assert client.get("/healthz").json() == {"status": "ok"}
                    assert client.get("/v1/members/m1").status_code == 401
                    assert client.get("/v1/members/no-such-member-xyz",
                                      headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "no worker answered within 60 s"
                time.sleep(0.2)
        servers = [p for p in descendants(server.pid)
                   if "spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        assert len(servers) == 2, servers
    finally:
        server.terminate()
        server.wait(20)
    assert server.returncode is not None
