"""The read API's guards that need no service: the token is checked from the headers before any body is
read, the body limit, /metrics moved to its own port, the tokens file, and the refusal to start with the
local development token outside `local`.

The app is built against a Redis nothing listens on: none of these requests may reach it.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from app.config import DEFAULT_API_TOKEN, ConfigError, Settings
from app.entrypoints.api import create_api
from app.entrypoints.api.auth import bearer_token, token_matches
from app.entrypoints.api.body_limit import BodyLimit
from app.entrypoints.commands.api_cmd import check_tokens
from app.entrypoints.commands.errors import CommandError

TOKEN = "unit-token-3f9a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1
ELIGIBILITY = "/v1/members/m1/eligibility"


def make_settings(**overrides) -> Settings:
    return Settings(api_tokens=TOKEN, redis_url=NO_REDIS, **overrides)


@pytest.fixture
def client():
    with TestClient(create_api(make_settings(api_max_body_bytes=1000)), raise_server_exceptions=False) as c:
        yield c


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert response.json()["error"]["code"] == code
    return response.json()["error"]


class Unreadable(AssertionError):
    pass


def call_asgi(app, method: str, path: str, headers: list[tuple[bytes, bytes]],
              chunks: list[bytes] | None = None) -> tuple[int, bytes, int]:
    """One request straight into the app. Without chunks its body cannot be read: receive() fails the
    test; with chunks, receive() hands them out one by one (a chunked upload). Returns the status, the
    body and how often receive was called."""
    calls = 0
    sent: list[dict] = []

    async def receive():
        nonlocal calls
        calls += 1
        if chunks is None:
            raise Unreadable("the app read the body")
        if calls > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[calls - 1], "more_body": calls < len(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, calls


# --- 401 before the body -----------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    [],
    [(b"authorization", b"Bearer wrong")],
    [(b"authorization", f"Basic {TOKEN}".encode())],
])
def test_an_unauthenticated_post_is_401_and_its_body_is_never_read(headers):
    app = create_api(make_settings())
    status, body, receive_calls = call_asgi(
        app, "POST", ELIGIBILITY, [(b"content-type", b"application/json"), (b"content-length", b"10"), *headers])
    assert (status, receive_calls) == (401, 0), body
    assert b'"unauthorized"' in body


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"x" * 5000])
def test_a_broken_or_huge_body_without_a_token_is_401_not_422_or_413(client, content):
    r = client.post(ELIGIBILITY, content=content, headers={"Content-Type": "application/json"})
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


def test_unknown_paths_need_a_token_too(client):
    assert_error(client.get("/v1/nothing-here"), 401, "unauthorized")
    assert_error(client.get("/"), 401, "unauthorized")
    assert_error(client.get("/v1/nothing-here", headers=AUTH), 404, "not_found")


def test_tokens_are_parsed_from_one_bearer_header():
    assert bearer_token([(b"authorization", b"Bearer abc")]) == b"abc"
    assert bearer_token([(b"Authorization", b"bearer   abc ")]) == b"abc"
    assert bearer_token([(b"authorization", b"Bearer")]) is None
    assert bearer_token([(b"authorization", b"Basic abc")]) is None
    assert bearer_token([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")]) is None
    assert token_matches(b"b", (b"a", b"b")) and not token_matches(b"c", (b"a", b"b"))


# --- body limit --------------------------------------------------------------------------------

def test_a_declared_body_over_the_limit_is_413_without_reading_it():
    app = create_api(make_settings(api_max_body_bytes=1000))
    status, body, receive_calls = call_asgi(
        app, "POST", ELIGIBILITY, [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-length", b"1001")])
    assert (status, receive_calls) == (413, 0), body
    assert b'"body_too_large"' in body


@pytest.mark.parametrize("declared", [[], [(b"content-length", b"10")]],
                         ids=["chunked", "chunked beside a small Content-Length"])
def test_a_streamed_body_over_the_limit_is_413_and_read_no_further(declared):
    """A chunked body is counted whatever length it also declares: h11 reads such a request as chunked
    (Transfer-Encoding wins over Content-Length) and hands the app both headers."""
    app = create_api(make_settings(api_max_body_bytes=1000))
    headers = [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", b"application/json"),
               (b"transfer-encoding", b"chunked"), *declared]
    status, body, receive_calls = call_asgi(app, "POST", ELIGIBILITY, headers, chunks=[b"x" * 300] * 100)
    assert status == 413, body
    assert json.loads(body)["error"] == {"code": "body_too_large",
                                         "message": "the request body is larger than 1000 bytes"}
    assert receive_calls == 4  # the 4th chunk crosses 1000 bytes


def test_a_body_within_the_limit_is_parsed(client):
    assert_error(client.post(ELIGIBILITY, content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}),
                 422, "validation_error")


# --- /metrics on its own port ------------------------------------------------------------------

def test_metrics_leave_the_main_port_when_they_have_their_own():
    with TestClient(create_api(make_settings(api_metrics_port=0)), raise_server_exceptions=False) as c:
        assert_error(c.get("/metrics"), 404, "not_found")
        assert "/metrics" not in c.get("/openapi.json").json()["paths"]
        assert c.get("/healthz").status_code == 200
    with TestClient(create_api(make_settings()), raise_server_exceptions=False) as c:
        assert c.get("/metrics").status_code == 200


# --- tokens: the file and the start-up refusal -------------------------------------------------

def test_the_tokens_file_has_one_token_a_line_with_comments_and_blank_lines(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# rotated 2026-11\nalpha\n\n  beta  \n# gamma\n")
    assert Settings(api_tokens_file=path).api_token_set == {"alpha", "beta"}
    assert Settings(api_tokens_file=path, api_tokens="delta").api_token_set == {"alpha", "beta", "delta"}
    assert Settings().api_token_set == {DEFAULT_API_TOKEN}  # neither set: the local development token
    path.write_text("# nothing yet\n")
    assert Settings(api_tokens_file=path).api_token_set == frozenset()


def test_an_unreadable_tokens_file_names_the_path_not_the_content(tmp_path):
    missing = tmp_path / "absent"
    with pytest.raises(ConfigError) as missing_error:
        _ = Settings(api_tokens_file=missing).api_token_set
    assert str(missing_error.value) == f"cannot read LEDGER_API_TOKENS_FILE {missing}: No such file or directory"
    binary = tmp_path / "binary"
    binary.write_bytes(b"secret-\xff-token\n")
    with pytest.raises(ConfigError) as binary_error:
        _ = Settings(api_tokens_file=binary).api_token_set
    assert "secret" not in str(binary_error.value) and str(binary) in str(binary_error.value)


def test_the_api_tokens_never_show_in_the_settings_repr():
    assert TOKEN not in repr(make_settings()) and TOKEN not in str(make_settings().model_dump())


@pytest.mark.parametrize("environment, tokens, refused", [
    ("production", None, "refusing to serve with the local development token"),
    ("production", f"{TOKEN},{DEFAULT_API_TOKEN}", "refusing to serve with the local development token"),
    ("production", " , ", "no API token configured"),
    ("local", " , ", "no API token configured"),
    ("production", TOKEN, None),
    ("local", None, None),
])
def test_start_up_refuses_the_default_token_outside_local(environment, tokens, refused):
    settings = Settings(environment=environment, **({} if tokens is None else {"api_tokens": tokens}))
    if refused is None:
        check_tokens(settings)
        return
    with pytest.raises(CommandError) as error:
        check_tokens(settings)
    assert refused in str(error.value)
    assert TOKEN not in str(error.value) and DEFAULT_API_TOKEN not in str(error.value)


def test_ledger_api_outside_local_exits_with_one_line_before_listening(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env.update(LEDGER_ENVIRONMENT="production", LEDGER_API_PORT="0")  # were it to start, the timeout fails it
    refused = subprocess.run([sys.executable, "-m", "app", "api"], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and refused.stdout == ""
    assert refused.stderr.startswith("ledger api: LEDGER_ENVIRONMENT=production: refusing to serve with the local "
                                     "development token")
    env["LEDGER_API_TOKENS_FILE"] = str(tmp_path / "absent")
    unreadable = subprocess.run([sys.executable, "-m", "app", "api"], capture_output=True, text=True, env=env,
                                timeout=60)
    assert (unreadable.returncode, unreadable.stderr) == (
        1, f"ledger api: cannot read LEDGER_API_TOKENS_FILE {tmp_path / 'absent'}: No such file or directory\n")


@pytest.mark.parametrize("headers", [[], [(b"content-length", b"12")]])
def test_a_body_framed_by_http_1_reaches_the_app_untouched(headers):
    """No body, or a declared one within the limit: nothing to count, so no wrapper costs the request."""
    seen = {}

    async def app(scope, receive, send):
        seen.update(receive=receive, send=send)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    scope = {"type": "http", "http_version": "1.1", "method": "GET", "headers": headers}
    asyncio.run(BodyLimit(app, max_bytes=100)(scope, receive, send))
    assert seen == {"receive": receive, "send": send}
