"""The CassandraDatacenter's security on a real node: a private Cassandra 5.0 (the local stack's jars,
its own ports and folder; the shared node is not touched) given the `cassandra-yaml` security
settings of the rendered production overlay (PasswordAuthenticator, CassandraAuthorizer, client
encryption with PEM files), the ledger-migrate Job's two steps (deploy/cql/, then the grants of
cassandra-grants.yaml), and each component's role at its work through the application's own code.

cass-operator's part, creating the roles from the Secrets under `users`, is done here with CREATE ROLE.
Skipped without the stack's Cassandra jars (`ledger stack up` installs them), java or openssl.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest
import yaml
from cassandra import Unauthorized

from app.adapters.cassandra import migrations
from app.adapters.cassandra import session as cassandra_session
from app.adapters.cassandra.event_store import CassandraEventStore
from app.adapters.cassandra.namespaces import CassandraNamespaces
from app.config import REPO_ROOT, Settings
from app.domain.state import MemberState
from tools.k8s.kustomize import render
from tools.stack.process import free_port

START_TIMEOUT_S = 240.0
LIB = Settings().stack_dir / "lib" / "cassandra"
KEYSPACE = "download_ledger"
ROLES = ("ledger_decider", "ledger_projector", "ledger_api", "ledger_tools")
pytestmark = pytest.mark.skipif(not any(LIB.glob("jamm-*.jar")) or not (shutil.which("java") and shutil.which("openssl")),
                                reason=f"needs java, openssl and the local stack's Cassandra jars in {LIB}")


def _certificates(folder) -> None:
    """The shape of Secret ledger-cassandra-tls: keystore.pem (PKCS#8 key + certificate) and ca.crt."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test ca")
    run("req", *key, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=ledger-dc1-service")
    (folder / "san.ext").write_text("subjectAltName=DNS:ledger-dc1-service,DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tls.crt",
        "-days", "1", "-extfile", "san.ext")
    (folder / "keystore.pem").write_text((folder / "tls.key").read_text() + (folder / "tls.crt").read_text())


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    root = tmp_path_factory.mktemp("cassandra-security")
    tls = root / "tls"
    tls.mkdir()
    _certificates(tls)
    objects = render(REPO_ROOT / "deploy" / "k8s" / "overlays" / "production")
    [dc] = [o for o in objects if o["kind"] == "CassandraDatacenter"]
    grants = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "ledger-cassandra-grants")
    security = {k: v for k, v in dc["spec"]["config"]["cassandra-yaml"].items()
                if k in ("authenticator", "authorizer", "role_manager", "client_encryption_options")}
    [volume] = [v for v in dc["spec"]["storageConfig"]["additionalVolumes"] if v["name"] == "client-tls"]
    native, storage = free_port(), free_port()
    local = (REPO_ROOT / "deploy" / "local" / "cassandra" / "cassandra.yaml").read_text().replace("{dir}", str(root))
    local = "\n".join(line for line in local.splitlines() if not line.startswith(("authenticator:", "authorizer:")))
    local = (local.replace("native_transport_port: 9042", f"native_transport_port: {native}")
             .replace("storage_port: 7000", f"storage_port: {storage}").replace("127.0.0.1:7000", f"127.0.0.1:{storage}"))
    config = root / "cassandra.yaml"
    config.write_text(local + "\n" + yaml.safe_dump(security).replace(volume["mountPath"], str(tls)))
    options = [arg for line in (REPO_ROOT / "deploy" / "local" / "cassandra" / "jvm17-server.options").read_text().splitlines()
               if line.strip().startswith("-") and not line.startswith(("-Xms", "-Xmx")) for arg in line.split()]
    log = (root / "out.log").open("w")
    process = subprocess.Popen([
        "java", *options, "-Xms768m", "-Xmx768m", f"-javaagent:{next(LIB.glob('jamm-*.jar'))}",
        f"-Dcassandra.config=file://{config}", f"-Dcassandra.logdir={root}", f"-Dcassandra.storagedir={root}",
        f"-Dcassandra.jmx.local.port={free_port()}", "-Dcassandra.superuser_setup_delay_ms=0",
        f"-Dlogback.configurationFile={REPO_ROOT / 'deploy' / 'local' / 'cassandra' / 'logback.xml'}",
        "-cp", f"{LIB}/*", "org.apache.cassandra.service.CassandraDaemon"], stdout=log, stderr=subprocess.STDOUT)
    passwords = root / "passwords"
    passwords.mkdir()

    def settings(user: str, password: str) -> Settings:
        (passwords / user).write_text(password + "\n")
        return Settings(cassandra_hosts="127.0.0.1", cassandra_port=native, cassandra_username=user,
                        cassandra_password_file=passwords / user, cassandra_ssl=True, cassandra_ssl_ca_file=tls / "ca.crt",
                        cassandra_local_dc="datacenter1", environment="local")

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"cassandra exited: {(root / 'out.log').read_text()[-3000:]}"
            try:
                cluster, session = cassandra_session.connect(settings("cassandra", "cassandra"))  # the superuser
                break
            except Exception:  # noqa: BLE001 - not up yet
                assert time.monotonic() < deadline, f"cassandra did not answer within {START_TIMEOUT_S}s"
                time.sleep(2)
        yield {"settings": settings, "session": session, "grants": grants["data"], "native": native, "root": root}
        cluster.shutdown()
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def migrated(node):
    """The Job ledger-migrate, as the superuser: the schema, then the grants; the roles exist first
    (cass-operator creates them from the Secrets)."""
    session = node["session"]
    migrations.migrate(session, REPO_ROOT / "deploy" / "cql", "local", KEYSPACE, echo=lambda _: None)
    for role in ROLES:
        session.execute(f"CREATE ROLE IF NOT EXISTS {role} WITH LOGIN = true AND PASSWORD = 'pw-{role}'")
    folder = node["root"] / "cql-grants"
    folder.mkdir()
    for name, text in node["grants"].items():
        (folder / name).write_text(text)
    return migrations.migrate(session, folder, "local", KEYSPACE, echo=lambda _: None)


def connect_as(node, role: str):
    return cassandra_session.connect(node["settings"](role, f"pw-{role}"))


def test_a_connection_without_tls_is_refused(node):
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster, NoHostAvailable

    cluster = Cluster(["127.0.0.1"], port=node["native"], protocol_version=5, connect_timeout=5,
                      control_connection_timeout=5, auth_provider=PlainTextAuthProvider("cassandra", "cassandra"))
    with pytest.raises(NoHostAvailable):
        cluster.connect()
    cluster.shutdown()


def test_the_grants_are_a_migration_beside_the_schema(node, migrated):
    assert [m.path.name for m in migrated] == [k for k in node["grants"] if k.endswith(".cql")]
    assert migrations.migrate(node["session"], REPO_ROOT / "deploy" / "cql", "local", KEYSPACE, echo=lambda _: None) == []


@pytest.mark.parametrize("role", ["ledger_decider", "ledger_projector"])
def test_a_worker_reads_and_writes_and_drops_nothing(node, migrated, role):
    cluster, session = connect_as(node, role)
    try:
        store = CassandraEventStore(session, KEYSPACE)
        asyncio.run(store.save_snapshot(MemberState(f"m-{role}", seq=1, clock=5)))
        assert asyncio.run(store.load(f"m-{role}")).seq == 1
        assert session.execute(f"INSERT INTO {KEYSPACE}.member_events (member_id, seq, sub, kind) "
                               f"VALUES ('c-{role}', 1, 0, 'accepted') IF NOT EXISTS").one()[0]   # a Paxos write
        with pytest.raises(Unauthorized):
            session.execute(f"DROP TABLE {KEYSPACE}.member_events")
    finally:
        cluster.shutdown()


def test_the_api_reads_only(node, migrated):
    cluster, session = connect_as(node, "ledger_api")
    try:
        store = CassandraEventStore(session, KEYSPACE)
        asyncio.run(store.load("m-anyone"))
        with pytest.raises(Unauthorized):
            asyncio.run(store.save_snapshot(MemberState("m-api", seq=1)))
    finally:
        cluster.shutdown()


def test_the_tools_create_a_replay_namespace_but_drop_or_alter_nothing_else(node, migrated):
    cluster, session = connect_as(node, "ledger_tools")
    try:
        namespaces = CassandraNamespaces(session, KEYSPACE)
        asyncio.run(namespaces.create("r2"))
        assert "r2" in asyncio.run(namespaces.namespaces())
        with pytest.raises(Unauthorized):
            asyncio.run(namespaces.drop("v1"))                     # made by the migrations, as the superuser
        with pytest.raises(Unauthorized):
            session.execute(f"ALTER TABLE {KEYSPACE}.member_events WITH comment = 'x'")
        asyncio.run(namespaces.drop("r2"))                         # Cassandra's grant to a table's creator
        assert "r2" not in asyncio.run(namespaces.namespaces())
    finally:
        cluster.shutdown()
