"""The KafkaUsers of deploy/k8s on a real broker: a private single-node Kafka (the local stack's jars,
its own ports and folder; the shared broker is not touched) with SCRAM-SHA-512 logins and the
StandardAuthorizer, given the ACLs of the rendered production overlay, then the application's own
Kafka code run as each user. tests/unit/test_k8s_manifests.py compares the ACLs with what the code
asks for; this shows the broker agrees: each component can do its work, and no more.

Skipped without the stack's Kafka jars (`ledger stack up` installs them) or java.
"""
from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import time
import uuid

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from pydantic import SecretStr

from app import bootstrap
from app.adapters.kafka import topic_admin
from app.adapters.kafka.connection import KafkaConnection
from app.adapters.kafka.lag import ConsumerLag, LagError
from app.adapters.kafka.ledger_reader import LedgerReader
from app.adapters.kafka.producer import BatchProducer, OutRecord, PublishError
from app.config import REPO_ROOT, Settings
from app.service.ports import LedgerReadError
from tools.k8s.kustomize import render
from tools.stack.process import free_port

START_TIMEOUT_S = 120.0
SETTINGS = Settings()
LIB = SETTINGS.stack_dir / "lib" / "kafka"
pytestmark = pytest.mark.skipif(not any(LIB.glob("kafka_*.jar")) or shutil.which("java") is None,
                                reason=f"needs java and the local stack's Kafka jars in {LIB}")
ADMIN = "admin"


def _acl_bindings(users: dict) -> list[AclBinding]:
    """Strimzi's `simple` ACLs of each KafkaUser as the broker's bindings (allow, any host)."""
    bindings = []
    for name, user in users.items():
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            pattern = ResourcePatternType.LITERAL if resource["patternType"] == "literal" else ResourcePatternType.PREFIXED
            for op in acl["operations"]:
                operation = AclOperation[{"DescribeConfigs": "DESCRIBE_CONFIGS"}.get(op, op.upper())]
                bindings.append(AclBinding(ResourceType[resource["type"].upper()], resource["name"], pattern,
                                           f"User:{name}", "*", operation, AclPermissionType.ALLOW))
    return bindings


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    root = tmp_path_factory.mktemp("kafka-acls")
    users = {o["metadata"]["name"]: o for o in render(REPO_ROOT / "deploy" / "k8s" / "overlays" / "production")
             if o["kind"] == "KafkaUser"}
    passwords = {name: uuid.uuid4().hex for name in [*users, ADMIN]}
    client, controller = free_port(), free_port()
    login = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" '
             f'password="{passwords[ADMIN]}";')
    config = root / "server.properties"
    config.write_text("\n".join([
        "process.roles=broker,controller", "node.id=1", f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
        f"listeners=CLIENT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=CLIENT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
        "controller.listener.names=CONTROLLER", "inter.broker.listener.name=CLIENT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,CLIENT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms=SCRAM-SHA-512", "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        f"listener.name.client.scram-sha-512.sasl.jaas.config={login}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # the controller listener is local to this process; the admin creates the topics and ACLs
        f"super.users=User:{ADMIN};User:ANONYMOUS", "allow.everyone.if.no.acl.found=false",
        f"log.dirs={root / 'data'}", "num.partitions=3", "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=3", "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1", "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1", "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false", "num.network.threads=2", "num.io.threads=2", ""]))
    java = ["java", "-Xmx384m", "-XX:+UseSerialGC", "-Djava.awt.headless=true", f"-Dkafka.logs.dir={root}",
            "-cp", f"{LIB}/*"]
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    scram = [a for name, pw in passwords.items() for a in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={pw}]")]
    subprocess.run([*java, "kafka.tools.StorageTool", "format", "--standalone", f"--cluster-id={cluster_id}",
                    "-c", str(config), *scram], check=True, capture_output=True, timeout=120)
    log = (root / "kafka.out").open("w")
    process = subprocess.Popen([*java, "kafka.Kafka", str(config)], stdout=log, stderr=subprocess.STDOUT)

    def connection(user: str) -> KafkaConnection:
        return KafkaConnection(f"127.0.0.1:{client}", "SASL_PLAINTEXT", "SCRAM-SHA-512", user, SecretStr(passwords[user]))

    try:
        admin = AdminClient({**connection(ADMIN).librdkafka(), "socket.timeout.ms": 10_000, "log_level": 0})
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"kafka exited: {(root / 'kafka.out').read_text()[-2000:]}"
            try:
                admin.list_topics(timeout=3)
                break
            except KafkaException:
                assert time.monotonic() < deadline, f"kafka did not answer within {START_TIMEOUT_S}s"
                time.sleep(1)
        topics = [SETTINGS.events_topic, SETTINGS.ledger_topic, SETTINGS.rejections_topic, SETTINGS.dlq_topic]
        for future in admin.create_topics([NewTopic(t, 3, 1) for t in topics]).values():
            future.result(30)
        bindings = _acl_bindings(users)
        for future in admin.create_acls(bindings).values():
            future.result(30)
        # DescribeAcls is answered by the authorizer: once it lists them all, it enforces them all
        everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                      AclOperation.ANY, AclPermissionType.ANY)
        deadline = time.monotonic() + 30
        while len(admin.describe_acls(everything).result(30)) < len(bindings):
            assert time.monotonic() < deadline, "the ACLs did not reach the authorizer within 30s"
            time.sleep(0.2)
        yield {"connection": connection, "admin": admin, "topics": topics, "passwords": passwords, "port": client}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def produce(broker, user: str, topic: str) -> str | None:
    """None when the record was acknowledged, else why not."""
    producer = BatchProducer(broker["connection"](user), **{"message.timeout.ms": 8000})
    try:
        producer.produce_all([OutRecord(topic, b"key", b"value")])
        return None
    except PublishError as exc:
        return str(exc)
    finally:
        producer.close()


def measure_lag(broker, user: str, groups: list[str]) -> str | None:
    lag = ConsumerLag(broker["connection"](user), timeout_s=8)
    every = bootstrap.worker_groups(SETTINGS)
    try:
        described = lag.describe(list(every))
        for group in groups:
            lag.group_lag(group, every[group], described=described[group])
        return None
    except LagError as exc:
        return str(exc)
    finally:
        lag.close()


def read_all(broker, user: str, topic: str) -> int | str:
    reader = LedgerReader(broker["connection"](user), topic, batch_size=100, log_level=0)
    try:
        return sum(len(batch) for batch in reader.read(reader.beginning_offsets(), reader.end_offsets()))
    except LedgerReadError as exc:
        return str(exc)
    finally:
        reader.close()


def join_and_commit(broker, user: str, role: str) -> str | None:
    """What a Faust worker's aiokafka consumer does in its group: join, fetch, commit."""
    from aiokafka import AIOKafkaConsumer

    async def run():
        consumer = AIOKafkaConsumer(
            *bootstrap.role_topics(SETTINGS, role), bootstrap_servers=f"127.0.0.1:{broker['port']}",
            group_id=bootstrap.group_id(SETTINGS, role), security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user, sasl_plain_password=broker["passwords"][user],
            auto_offset_reset="earliest", enable_auto_commit=False)
        try:
            await asyncio.wait_for(consumer.start(), 30)
            await asyncio.wait_for(consumer.getmany(timeout_ms=2000), 30)
            await asyncio.wait_for(consumer.commit(), 30)
            return None
        except Exception as exc:  # noqa: BLE001 - the refusal is the answer
            return f"{type(exc).__name__}: {exc}"
        finally:
            await consumer.stop()

    return asyncio.run(run())


def test_the_decider_writes_its_outputs_and_consumes_its_input_only(broker):
    for topic in (SETTINGS.ledger_topic, SETTINGS.rejections_topic, SETTINGS.dlq_topic):
        assert produce(broker, "ledger-decider", topic) is None, topic
    assert "authorization failed" in produce(broker, "ledger-decider", SETTINGS.events_topic).lower()
    assert join_and_commit(broker, "ledger-decider", "decider") is None
    assert measure_lag(broker, "ledger-decider", [bootstrap.group_id(SETTINGS, "decider")]) is None


def test_the_projector_consumes_the_ledger_and_the_rejections_and_writes_nothing(broker):
    assert join_and_commit(broker, "ledger-projector", "projector") is None
    assert measure_lag(broker, "ledger-projector", [bootstrap.group_id(SETTINGS, "projector")]) is None
    assert "authorization failed" in produce(broker, "ledger-projector", SETTINGS.events_topic).lower()
    assert join_and_commit(broker, "ledger-projector", "decider") is not None


def test_the_tools_run_status_replay_dlq_redrive_and_topics_diff(broker):
    produce(broker, "ledger-decider", SETTINGS.ledger_topic)
    produce(broker, "ledger-decider", SETTINGS.dlq_topic)
    assert measure_lag(broker, "ledger-tools", list(bootstrap.worker_groups(SETTINGS))) is None   # ledger status
    assert isinstance(read_all(broker, "ledger-tools", SETTINGS.ledger_topic), int)                # ledger replay
    assert isinstance(read_all(broker, "ledger-tools", SETTINGS.dlq_topic), int)                   # ledger dlq list
    assert produce(broker, "ledger-tools", SETTINGS.events_topic) is None                           # ledger dlq redrive
    assert "authorization failed" in produce(broker, "ledger-tools", SETTINGS.ledger_topic).lower()
    assert join_and_commit(broker, "ledger-tools", "decider") is not None


def test_the_topics_check_only_describes(broker):
    described = topic_admin.describe(topic_admin.admin_client(broker["connection"]("ledger-topics-check")),
                                     broker["topics"])
    assert set(described) == set(broker["topics"]) and all(t.config for t in described.values())
    assert "authorization failed" in str(read_all(broker, "ledger-topics-check", SETTINGS.ledger_topic)).lower()


def test_the_readers_group_acls_are_needed(broker):
    """Last, as it takes ACLs away: without them the replay and the lag exporter fail."""
    admin = broker["admin"]
    for principal, resource, pattern in (
            ("User:ledger-tools", "ledger-replay-", ResourcePatternType.PREFIXED),
            ("User:ledger-decider", bootstrap.group_id(SETTINGS, "projector"), ResourcePatternType.LITERAL)):
        for future in admin.delete_acls([AclBindingFilter(ResourceType.GROUP, resource, pattern, principal, "*",
                                                          AclOperation.ANY, AclPermissionType.ANY)]).values():
            assert len(future.result(30)) == 1
    deadline = time.monotonic() + 30   # ACL changes reach the authorizer through the metadata log
    while True:
        replay = read_all(broker, "ledger-tools", SETTINGS.ledger_topic)
        lag = measure_lag(broker, "ledger-decider", [bootstrap.group_id(SETTINGS, "decider")])
        if isinstance(replay, str) and lag is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "group authorization failed" in str(replay).lower()
    assert lag is not None and "group authorization failed" in lag.lower()
