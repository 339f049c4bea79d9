"""The busy reads' fast path (``app.entrypoints.api.fast_reads``) answers exactly as FastAPI does.

Two apps on the same views: one with the fast path, one with the busy reads left to FastAPI alone
(``create_api(..., fast_reads=False)``). Every request, valid or not, must get from both the same ASGI
messages (status, headers, body), the same exception out of the app, and the same request metrics.
The views are served by a stand-in for the Redis client; some members make it fail as Redis can
(unreachable, timing out, a view that does not decode, an unexpected error).
"""
from __future__ import annotations

import asyncio

import pytest
import redis.exceptions
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from app.adapters.redis.view_store import DEFAULT_NAMESPACE, member_key
from app.adapters.view_json import encode_view
from app.config import Settings
from app.domain import MemberState
from app.entrypoints.api import create_api
from app.entrypoints.api.fast_reads import query_params
from app.entrypoints.api.models import TIME_MAX, TIME_MIN, YEAR_MAX, YEAR_MIN
from tests.support.domain_builders import DAY, T0, acquire, event, plan, release, renew, run

TOKEN = "unit-token-fast"
AUTH = (b"authorization", f"Bearer {TOKEN}".encode())
NOW = T0 + 5 * DAY


def _state(member: str) -> MemberState:
    _, state = run([
        event(plan(device_limit=2, downloads_per_device=3, monthly_limit=10), member=member),
        event(acquire("l1", "d1", "t1", "s1", expires=T0 + 2 * DAY), member=member),
        event(acquire("l2", "d2", "t2", "s1", expires=T0 + 9 * DAY), T0 + 1, member=member),
        event(renew("l2", expires=T0 + 20 * DAY), T0 + 2, member=member),
        event(acquire("l3", "d1", "t1", "s2", expires=T0 + 9 * DAY), T0 + 3, member=member),
        event(release("l3"), T0 + 4, member=member),
    ], MemberState.empty(member))
    return state


MEMBERS = ("m1", "M.2:x_y-Z", "a" * 64)
FAILING = {
    "down": redis.exceptions.ConnectionError("Error 111 connecting"),
    "slow": redis.exceptions.TimeoutError("Timeout reading from socket"),
    "boom": RuntimeError("unexpected"),
}


class FakeRedis:
    """The two commands ViewReader sends, over fixed views; the members of FAILING fail."""

    def __init__(self):
        self.views = {member_key(DEFAULT_NAMESPACE, m): encode_view(_state(m)).encode() for m in MEMBERS}
        self.views[member_key(DEFAULT_NAMESPACE, "corrupt")] = b"{not a view"

    async def get(self, key):
        return None  # no pointer: the default namespace

    async def hget(self, key, field):
        for member, error in FAILING.items():
            if key == member_key(DEFAULT_NAMESPACE, member):
                raise error
        return self.views.get(key)


def _app(fast: bool):
    settings = Settings(api_tokens=TOKEN, redis_url="redis://127.0.0.1:1/0")
    return create_api(settings, redis_client=FakeRedis(), now_ms=lambda: NOW, fast_reads=fast)


FAST, PLAIN = _app(True), _app(False)


def _call(app, method: str, path: str, query: bytes = b"", headers=(AUTH,)):
    """The ASGI messages the app sends, the type of the exception it raises (or None), and its scope."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query,
             "headers": [(b"host", b"test"), *headers], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    raised = None
    try:
        asyncio.run(app(scope, receive, send))
    except Exception as exc:  # the server error middleware answers 500, then raises it on
        raised = type(exc)
    return sent, raised, scope


def _requests(app) -> dict:
    """The request counters, by (method, route, status)."""
    return {tuple(sample.labels.values()): sample.value
            for metric in app.state.metrics.registry.collect() if metric.name == "ledger_api_requests"
            for sample in metric.samples if sample.name.endswith("_total")}


def assert_same(method: str, path: str, query: bytes = b"", headers=(AUTH,)) -> dict:
    """Both apps answer alike and count the request alike; returns the fast app's scope."""
    before_fast, before_plain = _requests(FAST), _requests(PLAIN)
    fast_sent, fast_raised, scope = _call(FAST, method, path, query, headers)
    plain_sent, plain_raised, _ = _call(PLAIN, method, path, query, headers)
    assert fast_sent == plain_sent, (method, path, query)
    assert fast_raised is plain_raised
    counted = {k: v - before_fast.get(k, 0) for k, v in _requests(FAST).items() if v != before_fast.get(k, 0)}
    assert counted == {k: v - before_plain.get(k, 0) for k, v in _requests(PLAIN).items()
                       if v != before_plain.get(k, 0)}
    assert len(counted) == 1
    return scope


def _answered_by_fast_path(scope) -> bool:
    return "starlette.exception_handlers" not in scope  # set by the ExceptionMiddleware in front of FastAPI's router


SUMMARY, LICENSES, DOWNLOADS = "/v1/members/m1", "/v1/members/m1/licenses", "/v1/members/m1/titles/t1/downloads"

FAST_CASES = [
    (SUMMARY, b""),
    (SUMMARY, f"at={T0 + DAY}".encode()),
    (SUMMARY, f"at={TIME_MIN}".encode()),
    (SUMMARY, f"at={TIME_MAX}".encode()),
    (SUMMARY, b"at=0"),
    (SUMMARY, b"at=-1"),
    (SUMMARY, b"at=-0"),
    (SUMMARY, b"at=x&at=5"),  # the last value counts
    (SUMMARY, b"other=1&year=abc&state=nope"),  # ...of the route's own parameters only
    (SUMMARY, b"&&at=5&"),
    ("/v1/members/M.2:x_y-Z", b""),
    ("/v1/members/" + "a" * 64, b""),
    ("/v1/members/unknown", b""),
    ("/v1/members/down", b""),
    ("/v1/members/slow", b""),
    ("/v1/members/corrupt", b""),
    ("/v1/members/boom", b""),
    (LICENSES, b""),
    (LICENSES, b"state=active"),
    (LICENSES, b"state=expired&at=1717300000000"),
    (LICENSES, b"state=released"),
    (LICENSES, b"state_filter=active"),  # not the parameter's name: ignored
    ("/v1/members/unknown/licenses", b"state=active"),
    ("/v1/members/down/licenses", b""),
    (DOWNLOADS, b""),
    (DOWNLOADS, b"year=2024"),
    (DOWNLOADS, f"year={YEAR_MIN}".encode()),
    (DOWNLOADS, f"year={YEAR_MAX}".encode()),
    ("/v1/members/m1/titles/t2/downloads", b"year=2024"),
    ("/v1/members/unknown/titles/t1/downloads", b""),
    ("/v1/members/slow/titles/t1/downloads", b""),
]

FASTAPI_CASES = [
    ("/v1/members/" + "a" * 65, b""),
    ("/v1/members/m 1", b""),
    ("/v1/members/m1\n", b""),  # Python's `$` would accept it, pydantic's does not
    ("/v1/members/\u00e9", b""),
    ("/v1/members/", b""),
    ("/v1/members/m1/", b""),  # trailing slash
    ("/v1/members/m1/licenses/", b""),
    ("/v1/members/m1/titles//downloads", b""),
    ("/v1/members/m1/titles/t%/downloads", b""),
    ("/v1/members/m1/history", b""),
    (SUMMARY, f"at={TIME_MAX + 1}".encode()),
    (SUMMARY, f"at={TIME_MIN - 1}".encode()),
    (SUMMARY, b"at="),
    (SUMMARY, b"at"),
    (SUMMARY, b"at=abc"),
    (SUMMARY, b"at=007"),
    (SUMMARY, b"at=+5"),
    (SUMMARY, b"at=1e3"),
    (SUMMARY, b"at=1.0"),
    (SUMMARY, b"at=1_000"),
    (SUMMARY, b"at=%35"),
    (SUMMARY, b"%61t=5"),
    (SUMMARY, b"other=%zz"),
    (SUMMARY, b"at=5&at=x"),
    (SUMMARY, b"at=" + b"9" * 5000),
    (LICENSES, b"state=ACTIVE"),
    (LICENSES, b"state="),
    (LICENSES, b"state=active+"),
    (LICENSES, b"state=active&at=1.5"),
    (DOWNLOADS, f"year={YEAR_MAX + 1}".encode()),
    (DOWNLOADS, f"year={YEAR_MIN - 1}".encode()),
    (DOWNLOADS, b"year=20x4"),
    ("/v1/members/m1/titles/" + "t" * 65 + "/downloads", b""),
]


@pytest.mark.parametrize(("path", "query"), FAST_CASES)
def test_the_fast_path_answers_as_fastapi(path, query):
    scope = assert_same("GET", path, query)
    assert _answered_by_fast_path(scope)
    assert scope["route"].path.startswith("/v1/members/{member_id}")


@pytest.mark.parametrize(("path", "query"), FASTAPI_CASES)
def test_what_the_fast_path_is_not_sure_of_goes_to_fastapi(path, query):
    scope = assert_same("GET", path, query)
    assert not _answered_by_fast_path(scope)


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", [SUMMARY, LICENSES, DOWNLOADS])
def test_other_methods_go_to_fastapi(method, path):
    assert not _answered_by_fast_path(assert_same(method, path))


@pytest.mark.parametrize("headers", [(), ((b"authorization", b"Bearer wrong"),), ((b"authorization", b"Basic x"),)])
@pytest.mark.parametrize("path", [SUMMARY, LICENSES, DOWNLOADS, "/v1/members/down"])
def test_without_a_valid_token_both_answer_401(headers, path):
    assert_same("GET", path, b"", headers)


def test_a_root_path_goes_to_fastapi():
    sent, _, scope = _call(FAST, "GET", SUMMARY)
    assert _answered_by_fast_path(scope)
    scope = {**scope, "root_path": "/api"}
    for key in ("route", "app"):
        scope.pop(key)
    messages: list[dict] = []

    async def send(message):
        messages.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(FAST(scope, receive, send))
    assert not _answered_by_fast_path(scope)


def test_the_openapi_document_is_the_same():
    assert FAST.openapi() == PLAIN.openapi()


def test_queries_are_read_as_starlette_reads_them():
    from starlette.datastructures import QueryParams

    for raw in [b"", b"a=1&b=2", b"a=1&a=2", b"a", b"a=", b"a==b", b"&&a=1&", b"=1", b"a=1;b=2"]:
        assert query_params(raw) == dict(QueryParams(raw)), raw
    assert query_params(b"a=%31") is None
    assert query_params(b"a=1+2") is None


_SEGMENT = st.one_of(
    st.sampled_from(["m1", "M.2:x_y-Z", "a" * 64, "a" * 65, "unknown", "down", "corrupt", "t1", "licenses",
                     "titles", "downloads", "", " ", "m1\n", "\u00e9"]),
    st.text(alphabet="abz09._:-/ %\n", min_size=0, max_size=8),
)
_VALUE = st.one_of(
    st.integers(min_value=TIME_MIN - 2, max_value=TIME_MAX + 2).map(str),
    st.integers(min_value=YEAR_MIN - 2, max_value=YEAR_MAX + 2).map(str),
    st.sampled_from(["", "active", "expired", "released", "Active", "0", "-0", "00", "+1", "1.0", "%31", "1+"]),
    st.text(alphabet="0123456789-+ .e_%&=", max_size=6),
)
_PAIR = st.tuples(st.sampled_from(["at", "state", "year", "x", "a%74", ""]), st.sampled_from(["=", ""]), _VALUE)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.sampled_from(["summary", "licenses", "downloads", "other"]),
    member=_SEGMENT, title=_SEGMENT, tail=_SEGMENT,
    pairs=st.lists(_PAIR, max_size=4),
)
def test_any_request_gets_the_same_answer(shape, member, title, tail, pairs):
    path = {"summary": f"/v1/members/{member}", "licenses": f"/v1/members/{member}/licenses",
            "downloads": f"/v1/members/{member}/titles/{title}/downloads",
            "other": f"/v1/members/{member}/{tail}"}[shape]
    query = "&".join(f"{name}{eq}{value}" for name, eq, value in pairs).encode()
    assert_same("GET", path, query)


def test_the_fast_path_refuses_routes_whose_paths_it_does_not_answer():
    from types import SimpleNamespace

    from app.entrypoints.api.fast_reads import PATHS, FastReads, Routes

    routes = Routes(*(SimpleNamespace(path=p) for p in PATHS))
    FastReads(None, None, routes, {})  # the paths it answers: accepted
    renamed = routes._replace(licenses=SimpleNamespace(path="/v1/members/{member_id}/license-list"))
    with pytest.raises(ValueError, match="license-list"):
        FastReads(None, None, renamed, {})
