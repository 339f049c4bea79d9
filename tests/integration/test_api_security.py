"""The read API's guards in a real `ledger api` process (real uvicorn, real sockets): a 401 and a 413
answered from the headers while the announced body never arrives, /metrics on its own port, and no
token or Redis password in anything the process prints or answers.

The secrets test runs its own redis-server with a password (the local stack's Redis has none) on a
free port, and stops it to provoke the Redis errors; the local stack is not touched.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from app.adapters.redis.view_store import member_key
from tests.support.helpers import wait_until
from tools.stack.process import free_port

TOKEN = "integ-token-7c1d2e"
OTHER_TOKEN = "integ-token-b84f10"
ANSWER_TIMEOUT_S = 5.0
STOPPED = (0, -signal.SIGTERM)  # uvicorn shuts down, then raises the signal it caught again


@contextmanager
def ledger_api(env: dict, *args: str):
    """`ledger api` on a free port; yields (process, main port, metrics port or None, output file).
    stdout and stderr go to one file, read by the caller after the process stopped."""
    log = Path(env.pop("_LOG"))
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "app", "api", "--port", "0", *args],
                                  stdout=out, stderr=subprocess.STDOUT, env={**base, **env})
    try:
        first = wait_until(lambda: re.search(rb"serving http://127\.0\.0\.1:(\d+)[^\n]*\n", log.read_bytes()),
                           timeout=60, message="ledger api to listen")
        metrics = re.search(rb"/metrics on http://127\.0\.0\.1:(\d+)", first.group(0))
        yield server, int(first.group(1)), int(metrics.group(1)) if metrics else None, log
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(20)


def raw_request(port: int, head: bytes) -> tuple[bytes, float]:
    """Sends only the head of a request (its body never follows) and reads the answer; (answer, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer or not _complete(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer, time.monotonic() - started


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: (\d+)", head)
    return length is not None and len(body) >= int(length.group(1))


def post_head(length: int, token: str | None = None, extra: bytes = b"") -> bytes:
    auth = b"" if token is None else f"Authorization: Bearer {token}\r\n".encode()
    return (b"POST /v1/members/m1/eligibility HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + auth + extra + f"Content-Length: {length}\r\n\r\n".encode())


def test_401_and_413_are_answered_at_once_while_the_announced_body_never_comes(tmp_path):
    env = {"LEDGER_API_TOKENS": TOKEN, "LEDGER_API_MAX_BODY_BYTES": "1024", "_LOG": str(tmp_path / "api.log"),
           "LEDGER_REDIS_URL": "redis://127.0.0.1:1/0"}  # no request here may reach Redis
    with ledger_api(env, "--log-level", "warning") as (_, port, _, _):
        unauthenticated, unauthenticated_s = raw_request(port, post_head(10**9))
        assert unauthenticated.startswith(b"HTTP/1.1 401 "), unauthenticated
        assert b'"unauthorized"' in unauthenticated
        wrong, _ = raw_request(port, post_head(10**9, token="not-" + TOKEN))
        assert wrong.startswith(b"HTTP/1.1 401 "), wrong
        too_large, too_large_s = raw_request(port, post_head(10**9, token=TOKEN))
        assert too_large.startswith(b"HTTP/1.1 413 "), too_large
        assert b'"body_too_large"' in too_large
        # no Content-Length: the body is counted as it streams, and refused once past the limit
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=ANSWER_TIMEOUT_S) as client:
            def chunks():
                for _ in range(2000):
                    yield b"x" * 512

            streamed = client.post("/v1/members/m1/eligibility", content=chunks(),
                                   headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            assert streamed.status_code == 413, streamed.text
            assert streamed.json()["error"]["code"] == "body_too_large"
    # waiting for a body of 10**9 bytes that never comes would end in the client's timeout instead
    assert max(unauthenticated_s, too_large_s) < 1.0, (unauthenticated_s, too_large_s)
    print(f"\n401 in {unauthenticated_s * 1000:.1f} ms, 413 in {too_large_s * 1000:.1f} ms "
          "(Content-Length 10^9, no body sent)")


def test_metrics_on_their_own_port_and_404_on_the_main_port(tmp_path):
    env = {"LEDGER_API_TOKENS": TOKEN, "LEDGER_API_METRICS_PORT": "0", "_LOG": str(tmp_path / "api.log"),
           "LEDGER_REDIS_URL": "redis://127.0.0.1:1/0"}
    with ledger_api(env, "--log-level", "warning") as (server, port, metrics_port, _):
        assert metrics_port is not None and metrics_port != port
        with httpx.Client(timeout=ANSWER_TIMEOUT_S) as client:
            main, metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
            assert client.get(f"{main}/healthz").status_code == 200
            assert client.get(f"{main}/v1/members/m1").status_code == 401
            on_main = client.get(f"{main}/metrics")
            assert on_main.status_code == 404 and on_main.json()["error"]["code"] == "not_found"
            scraped = client.get(f"{metrics}/metrics")
            assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
            text = scraped.text
            assert 'ledger_api_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
            assert 'ledger_api_requests_total{method="GET",route="/v1/members/{member_id}",status="401"} 1.0' in text
            assert 'route="/metrics"' not in text  # the main port routed no /metrics
            assert client.get(f"{metrics}/healthz").status_code == 404
            assert client.get(f"{metrics}/v1/members/m1").status_code == 404
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) in STOPPED  # the metrics server does not keep the API running


def test_metrics_port_with_two_workers_is_served_by_each(tmp_path):
    metrics_port = free_port()
    env = {"LEDGER_API_TOKENS": TOKEN, "LEDGER_API_METRICS_PORT": str(metrics_port),
           "_LOG": str(tmp_path / "api.log"), "LEDGER_REDIS_URL": "redis://127.0.0.1:1/0"}
    with ledger_api(env, "--log-level", "warning", "--workers", "2") as (server, port, announced, _):
        assert announced == metrics_port

        def scraped():
            try:
                return httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=ANSWER_TIMEOUT_S).status_code
            except httpx.TransportError:
                return None

        assert wait_until(scraped, timeout=60, message="a worker's /metrics") == 200
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=ANSWER_TIMEOUT_S).status_code == 404
    taken = subprocess.run([sys.executable, "-m", "app", "api", "--port", "0"], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "LEDGER_API_TOKENS": TOKEN,
                                            "LEDGER_API_METRICS_PORT": "0", "LEDGER_API_WORKERS": "2"})
    assert (taken.returncode, taken.stderr.strip()) == (
        1, "ledger api: LEDGER_API_METRICS_PORT=0 (any free port) needs --workers 1: each worker binds the port")


# --- secrets -----------------------------------------------------------------------------------

@contextmanager
def redis_with_password(tmp_path: Path, password: str):
    """A redis-server of this test's own (no persistence) requiring ``password``; yields (port, stop)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (`ledger stack up` installs it)")
    port = free_port()
    config = tmp_path / "redis.conf"  # the password in a file, not on a command line
    config.write_text(f"port {port}\nbind 127.0.0.1\nrequirepass {password}\nsave \"\"\nappendonly no\n"
                      f"dir {tmp_path}\n")
    config.chmod(0o600)
    server = subprocess.Popen([binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop():
        if server.poll() is None:
            server.terminate()
            server.wait(10)

    try:
        client = redis.Redis(port=port, password=password, socket_timeout=2, socket_connect_timeout=2)

        def pong():
            try:
                return client.ping()
            except redis.exceptions.ConnectionError:
                return False

        wait_until(pong, timeout=20, message="the test's redis-server")
        client.close()
        yield port, stop
    finally:
        stop()


def test_no_token_or_password_in_output_or_answers(tmp_path):
    password = "pw-" + os.urandom(12).hex()
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# the API's clients\n{TOKEN}\n\n{OTHER_TOKEN}\n")
    secrets = [password, TOKEN, OTHER_TOKEN]
    answers: list[str] = []
    with redis_with_password(tmp_path, password) as (redis_port, stop_redis):
        url = f"redis://:{password}@127.0.0.1:{redis_port}/0"
        with redis.Redis.from_url(url, socket_timeout=2) as views:
            views.hset(member_key("v1", "broken"), "state", "{not json")  # a view that does not decode: a 500
        env = {"LEDGER_API_TOKENS_FILE": str(tokens_file), "LEDGER_REDIS_URL": url, "LEDGER_ENVIRONMENT": "ci",
               "_LOG": str(tmp_path / "api.log")}
        with ledger_api(env, "--log-level", "debug", "--access-log") as (server, port, _, log):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=ANSWER_TIMEOUT_S) as client:
                def call(method: str, path: str, token: str | None = None, status: int | None = None, **kw):
                    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
                    r = client.request(method, path, headers=headers, **kw)
                    answers.append(f"{r.status_code} {r.headers} {r.text}")
                    if status is not None:
                        assert r.status_code == status, r.text
                    return r

                call("GET", "/v1/members/nobody", TOKEN, 404)  # Redis read with the password: it works
                call("GET", "/v1/members/nobody", OTHER_TOKEN, 404)
                call("GET", "/v1/members/nobody", TOKEN[:-1], 401)
                call("GET", "/v1/members/nobody", TOKEN + "x", 401)
                call("POST", "/v1/members/m1/eligibility", TOKEN, 422, content=b'{"device_id": 5')
                call("GET", "/v1/members/broken", TOKEN, 500)
                call("GET", "/readyz", status=503)
                stop_redis()
                call("GET", "/v1/members/nobody", TOKEN, 503)
                call("GET", "/readyz", status=503)
                call("POST", "/v1/members/m1/eligibility", TOKEN, 503,
                     json={"device_id": "d1", "title_id": "t1", "studio_id": "s1", "expires_at": 2**40})
                call("GET", "/openapi.json", status=200)
            server.send_signal(signal.SIGTERM)
            assert server.wait(20) in STOPPED
        output = log.read_text(errors="replace")
    assert "view of member broken" in output and "redis unavailable" in output, output  # the errors were logged
    assert re.search(r'"GET /v1/members/nobody HTTP/1.1" 404', output), output  # and the access log is on
    for secret in secrets:
        assert secret not in output, f"a secret in the output:\n{output}"
        for answer in answers:
            assert secret not in answer, answer
