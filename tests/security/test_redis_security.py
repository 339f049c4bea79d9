"""The secure Redis refuses anonymous, wrongly authenticated and plaintext clients, and each ACL user
is held to its rules (deploy/security/redis-users.acl)."""
from __future__ import annotations

import pytest

from tools.stack import secure_profile

TIMEOUT_S = 3.0


@pytest.fixture
def client_of(secure_dir):
    clients = []

    from redis.backoff import NoBackoff
    from redis.retry import Retry

    def connect(principal: str | None, **kwargs):
        # no retries: a refusal is the answer under test, not a blip
        client = secure_profile.redis_client(secure_dir, principal, timeout=TIMEOUT_S, retry=Retry(NoBackoff(), 0),
                                             **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def test_an_anonymous_client_is_refused(client_of):
    from redis.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError, match="^Authentication required"):
        client_of(None, protocol=2).ping()


def test_a_wrong_password_is_refused(client_of):
    from redis.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError, match="invalid username-password pair"):
        client_of("api", password="not-the-password").ping()


def test_a_client_without_tls_is_refused(client_of):
    from redis.exceptions import ConnectionError

    with pytest.raises(ConnectionError, match="Connection reset by peer|Connection closed by server"):
        client_of("admin", tls=False).ping()


def test_the_api_user_reads_but_cannot_write(client_of, redis_prefix):
    from redis.exceptions import NoPermissionError

    key = redis_prefix + "api"
    client_of("admin").set(key, "1")
    api = client_of("api")
    assert api.get(key) == b"1"
    refused = {
        "SET": lambda: api.set(key, "2"),
        "DEL": lambda: api.delete(key),
        "HSET": lambda: api.hset(key + ":h", "f", "v"),
        "EVAL": lambda: api.eval("return redis.call('SET', KEYS[1], '3')", 1, key),
        "FLUSHDB": lambda: api.flushdb(),
    }
    for name, call in refused.items():
        with pytest.raises(NoPermissionError):
            call()
        assert api.get(key) == b"1", name


def test_the_worker_users_run_the_fenced_scripts_on_ledger_keys_only(client_of, redis_prefix):
    from redis.exceptions import NoPermissionError

    from app.adapters.redis.view_store import FENCED_WRITE

    for principal in ("decider", "projector"):
        worker = client_of(principal)
        key, members = redis_prefix + f"{principal}:member", redis_prefix + f"{principal}:members"
        sha = worker.script_load(FENCED_WRITE.source)
        assert worker.evalsha(sha, 2, key, members, 5, "{}", "m1") == 1
        assert worker.hget(key, "seq") == b"5"
        with pytest.raises(NoPermissionError):
            worker.set("elsewhere", "x")  # outside ledger:*
        with pytest.raises(NoPermissionError):
            worker.evalsha(sha, 2, "elsewhere:member", "elsewhere:members", 6, "{}", "m1")
        for refused in (worker.flushdb, lambda: worker.keys("*"), lambda: worker.delete(key)):
            with pytest.raises(NoPermissionError):
                refused()


def test_the_projector_acknowledges_its_namespace_and_tools_read_the_acknowledgements(client_of, redis_prefix):
    """The acknowledgement scripts read Redis's clock (TIME) and prune expired fields (HGETALL, HDEL)."""
    from app.adapters.redis.projector_acks import _ACKNOWLEDGE, _LIVE

    key = redis_prefix + "projectors"
    projector = client_of("projector")
    assert projector.evalsha(projector.script_load(_ACKNOWLEDGE.source), 1, key, "worker-1", "v9", 60_000) == 1
    tools = client_of("tools")
    assert tools.evalsha(tools.script_load(_LIVE.source), 1, key) == [b"worker-1", b"v9"]


def test_the_tools_user_writes_and_unlinks_ledger_keys_but_nothing_dangerous(client_of, redis_prefix):
    from redis.exceptions import NoPermissionError

    tools = client_of("tools")
    key = redis_prefix + "tools"
    tools.set(key, "1")
    assert [k for k in tools.scan_iter(match=redis_prefix + "tools*")] == [key.encode()]
    assert tools.unlink(key) == 1
    for refused in (tools.flushall, tools.flushdb, lambda: tools.keys("*"), lambda: tools.config_get("*"),
                    lambda: tools.set("elsewhere", "x")):
        with pytest.raises(NoPermissionError):
            refused()
