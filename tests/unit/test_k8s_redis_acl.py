"""The Redis of deploy/k8s run for real: the rendered start.sh, redis.conf and users.acl of the ConfigMap
ledger-redis on a private redis-server (a free port, a throwaway CA), then the application's own
Redis adapters as each ACL user. The manifest test reads the rules; this one shows that Redis accepts
them, that they let each component do its work, and that they refuse what the component must not do.

Needs redis-server 7 (TLS built in) and openssl; skipped without them. Touches no shared service.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import time

import pytest
import redis
import redis.exceptions

from app import bootstrap
from app.adapters.redis.member_clocks import RedisMemberClocks
from app.adapters.redis.namespaces import RedisNamespacePointer, RedisNamespaces
from app.adapters.redis.view_store import RedisViewStore
from app.config import REPO_ROOT, Settings
from app.domain.state import MemberState
from tools.k8s.kustomize import render

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("openssl") is None,
                                reason="needs redis-server and openssl")

START_TIMEOUT_S = 15.0
NAMESPACE = "download-ledger"


def _free_port() -> int:
    """A port whose cluster bus port (+10000) is free too."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as b:
            try:
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def _certificates(folder) -> None:
    """ca.crt, and tls.crt/tls.key for localhost signed by it (the shape of Secret ledger-redis-tls)."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test ca")
    run("req", *key, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=localhost")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tls.crt",
        "-days", "1", "-extfile", "san.ext")


def _wait(condition, what: str, timeout_s: float = START_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = condition()
            if result:
                return result
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s}s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    data = next(o for o in render(REPO_ROOT / "deploy" / "k8s" / "overlays" / "production")
                if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "ledger-redis")["data"]
    root = tmp_path_factory.mktemp("redis")
    folders = {name: root / name for name in ("etc", "tls", "passwords", "run", "data")}
    for folder in folders.values():
        folder.mkdir()
    _certificates(folders["tls"])
    users = [line.split()[1] for line in data["users.acl"].splitlines()]
    passwords = {u: secrets.token_hex(16) for u in users if u not in ("default", "probe")}
    for user, password in passwords.items():
        (folders["passwords"] / user).write_text(password + "\n")   # a trailing newline, as files often have
    port = _free_port()
    for name, text in data.items():
        for path, folder in (("/etc/redis-tls", "tls"), ("/etc/redis-passwords", "passwords"), ("/run/redis", "run"),
                             ("/data", "data"), ("/etc/redis/", "etc")):
            text = text.replace(path, str(folders[folder]) + ("/" if path.endswith("/") else ""))
        (folders["etc"] / name).write_text(text.replace("tls-port 6379", f"tls-port {port}"))
    env = {**os.environ, "POD_IP": "127.0.0.1", "HOSTNAME": "ledger-redis-0", "POD_NAMESPACE": NAMESPACE,
           "REDIS_MAXMEMORY": "64mb"}
    log = (root / "redis.log").open("w")
    server = subprocess.Popen(["sh", str(folders["etc"] / "start.sh")], env=env, stdout=log, stderr=subprocess.STDOUT)
    ca = str(folders["tls"] / "ca.crt")

    def connect(user: str | None, password: str | None = None) -> redis.Redis:
        return redis.Redis(host="localhost", port=port, ssl=True, ssl_ca_certs=ca, username=user,
                           password=password if password is not None else passwords.get(user, "unused"),
                           socket_timeout=5, socket_connect_timeout=5)

    try:
        def started():
            assert server.poll() is None, f"redis-server exited: {(root / 'redis.log').read_text()[-2000:]}"
            return connect("probe").ping()

        _wait(started, f"redis-server started (log: {root / 'redis.log'})")
        admin = connect("ledger-admin")
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)   # one master with every slot
        _wait(lambda: b"cluster_state:ok" in admin.execute_command("CLUSTER", "INFO"), "cluster_state ok")
        announced = admin.execute_command("CLUSTER", "SLOTS")[0][2][0]
        # The cluster client connects to the announced name; here it must be the certificate's, localhost.
        admin.config_set("cluster-announce-hostname", "localhost")
        yield {"port": port, "ca": ca, "passwords": passwords, "folders": folders, "connect": connect,
               "announced": announced.decode() if isinstance(announced, bytes) else announced}
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def settings_for(node, user: str) -> Settings:
    return Settings(redis_url=f"rediss://localhost:{node['port']}/0", redis_cluster=True, redis_username=user,
                    redis_password_file=node["folders"]["passwords"] / user, redis_ssl_ca_file=node["ca"])


def test_start_sh_announces_the_dns_name_and_keeps_passwords_out_of_the_acl_rules(node):
    assert node["announced"] == f"ledger-redis-0.ledger-redis-headless.{NAMESPACE}.svc"
    written = (node["folders"]["run"] / "users.acl").read_text()
    assert not any(p in written for p in node["passwords"].values()), "a password in clear in the ACL file"
    assert (node["folders"]["run"] / "users.acl").stat().st_mode & 0o777 == 0o600


def test_nobody_gets_in_without_a_user_and_its_password(node):
    with pytest.raises(redis.exceptions.AuthenticationError):
        node["connect"](None, None).ping()                       # the default user is off
    with pytest.raises(redis.exceptions.AuthenticationError):
        node["connect"]("ledger-api", "not-the-password").ping()
    probe = node["connect"]("probe")
    assert probe.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        probe.get("ledger:active-namespace")


def test_each_component_does_its_work_through_the_applications_adapters(node):
    state = MemberState("m-1", clock=1_700_000_000_000, seq=3)

    async def projector():
        client = bootstrap.redis_client(settings_for(node, "ledger-projector"))
        try:
            assert await RedisViewStore(client, "v1").write_many([state]) == 1
            await RedisMemberClocks(client).advance({"m-1": 1_700_000_000_500})
            assert await RedisMemberClocks(client).read_many(["m-1"]) == {"m-1": 1_700_000_000_500}
            assert (await RedisViewStore(client, "v1").read_many(["m-1"]))["m-1"].seq == 3
            assert await RedisNamespacePointer(client).active()
            with pytest.raises(redis.exceptions.NoPermissionError):
                await RedisNamespaces(client).drop("v1")          # dropping a namespace is the tools' work
        finally:
            await client.aclose()

    async def api():
        settings = settings_for(node, "ledger-api")
        reader = bootstrap.api_reader(settings, client=bootstrap.redis_client(settings))
        try:
            assert (await reader.member("m-1")).seq == 3
            assert (await reader.member_at_decider_clock("m-1")).clock == 1_700_000_000_500
            assert (await reader.member_count())[1] == 1
            with pytest.raises(redis.exceptions.NoPermissionError):
                await RedisViewStore(reader.client, "v1").write_many([state])
            with pytest.raises(redis.exceptions.NoPermissionError):
                await reader.client.set("ledger:active-namespace", "v2")
        finally:
            await reader.client.aclose()

    async def tools():
        client = bootstrap.redis_client(settings_for(node, "ledger-tools"))
        try:
            await RedisViewStore(client, "v2").write_many([state])
            namespaces = RedisNamespaces(client)
            assert {"v1", "v2"} <= await namespaces.namespaces()
            assert await namespaces.holds_data("v2") and await namespaces.members("v2") == {"m-1"}
            pointer = RedisNamespacePointer(client)
            await pointer.switch(await pointer.active(), "v2")
            assert await namespaces.drop("v1") == 2
            with pytest.raises(redis.exceptions.NoPermissionError):
                await client.set("other:key", "1")                # keys outside ledger:* are not theirs
        finally:
            await client.aclose()

    asyncio.run(projector())
    asyncio.run(api())
    asyncio.run(tools())


def test_the_kubelets_probe_script_gets_a_pong(node):
    script = (node["folders"]["etc"] / "probe.sh").read_text().replace("redis-cli ", f"redis-cli -p {node['port']} ")
    probe = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0, probe.stderr
    as_default = subprocess.run(["sh", "-c", script.replace("--user probe --pass unused ", "")],
                                capture_output=True, text=True, timeout=30)
    assert as_default.returncode != 0, "the default user answered"


def test_the_create_jobs_redis_cli_reaches_the_cluster_as_the_admin(node):
    """create-cluster.sh's redis-cli (TLS, user ledger-admin, password from REDISCLI_AUTH) in cluster mode."""
    script = (node["folders"]["etc"] / "create-cluster.sh").read_text()
    cli = next(line for line in script.splitlines() if line.startswith("cli=")).split("=", 1)[1].strip('"')
    password = (node["folders"]["passwords"] / "ledger-admin").read_text().strip()
    check = subprocess.run([*cli.split(), "--cluster", "check", f"localhost:{node['port']}"], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "REDISCLI_AUTH": password})
    assert check.returncode == 0 and "All 16384 slots covered" in check.stdout, check.stdout + check.stderr
