"""The secure Kafka refuses anonymous, wrongly authenticated and plaintext clients, and each role is
held to its ACLs (deploy/security/kafka-acls.txt, rendered for this session's topics and group)."""
from __future__ import annotations

import logging
import socket
import struct
import time
import uuid

import pytest

from tools.stack import secure_profile

TIMEOUT_S = 10.0


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record) -> None:
        self.lines.append(record.getMessage())


def _refusal(stack_dir, principal, **overrides) -> tuple[list, str]:
    """A metadata request must fail within the timeout: the errors the client reported, and its log."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list = []
    lines = _Lines()
    logger = logging.getLogger(f"rdkafka-{uuid.uuid4().hex[:6]}")
    logger.addHandler(lines)
    logger.propagate = False
    admin = AdminClient(secure_profile.kafka_config(stack_dir, principal, error_cb=errors.append, logger=logger,
                                                    **overrides))
    with pytest.raises(KafkaException) as raised:
        admin.list_topics(timeout=TIMEOUT_S)
    assert raised.value.args[0].code() == KafkaError._TRANSPORT
    admin.poll(1.0)  # serves the error callbacks
    return errors, "\n".join(lines.lines)


def test_an_anonymous_client_is_refused(secure_dir):
    from confluent_kafka import KafkaError

    # TLS but no SASL: the broker waits for a SASL handshake and closes the connection instead.
    errors, log = _refusal(secure_dir, None)
    assert any(e.code() == KafkaError._ALL_BROKERS_DOWN for e in errors), errors
    assert "SSL connection closed by peer" in log, log


def test_a_wrong_password_is_refused(secure_dir):
    from confluent_kafka import KafkaError

    errors, _log = _refusal(secure_dir, "decider", password="not-the-password")
    assert any(e.code() == KafkaError._AUTHENTICATION and "invalid credentials" in e.str() for e in errors), errors


def test_a_client_without_tls_is_refused(secure_dir):
    """A plaintext ApiVersions request (the first thing every client sends) gets no answer: the
    broker takes its bytes for a TLS handshake and closes the connection."""
    client_id = b"refusal-test"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id  # ApiVersions v0, correlation id 1
    with socket.create_connection((secure_profile.HOST, secure_profile.KAFKA_PORT), timeout=TIMEOUT_S) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert answer == b"" or answer[:1] == b"\x15", answer[:16]  # closed, or a TLS alert record


def _produce(stack_dir, principal: str, topic: str):
    """The delivery error of one idempotent produce (None: delivered)."""
    from confluent_kafka import Producer

    results: list = []
    producer = Producer(secure_profile.kafka_config(
        stack_dir, principal, **{"enable.idempotence": True, "acks": "all", "message.timeout.ms": 8000}))
    producer.produce(topic, b"v", key=f"m-{uuid.uuid4().hex[:6]}".encode(), on_delivery=lambda e, _m: results.append(e))
    producer.flush(TIMEOUT_S + 5)
    assert results, f"no delivery report for {principal} -> {topic}"
    return results[0]


def _consume_one(stack_dir, principal: str, topic: str, group: str):
    """The first message, or the first error, of ``topic`` read in ``group`` (committed)."""
    from confluent_kafka import Consumer

    consumer = Consumer(secure_profile.kafka_config(
        stack_dir, principal, **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                return message.error()
            consumer.commit(message, asynchronous=False)
            return message
    finally:
        consumer.close()
    raise AssertionError(f"{principal} read nothing from {topic} in group {group} within 30 s")


def test_the_projector_cannot_produce_to_the_events_topic(secure_dir, kafka_topics):
    from confluent_kafka import KafkaError

    error = _produce(secure_dir, "projector", kafka_topics["events_topic"])
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_the_decider_cannot_produce_to_its_input(secure_dir, kafka_topics):
    from confluent_kafka import KafkaError

    error = _produce(secure_dir, "decider", kafka_topics["events_topic"])
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_tools_publish_events_and_the_decider_reads_them_in_its_group_and_writes_its_outputs(secure_dir, kafka_topics):
    assert _produce(secure_dir, "tools", kafka_topics["events_topic"]) is None
    message = _consume_one(secure_dir, "decider", kafka_topics["events_topic"], f"{kafka_topics['consumer_group']}-decider")
    assert not hasattr(message, "code"), message
    for topic in ("ledger_topic", "rejections_topic", "dlq_topic"):
        assert _produce(secure_dir, "decider", kafka_topics[topic]) is None, topic


def test_the_decider_cannot_read_in_another_group(secure_dir, kafka_topics):
    from confluent_kafka import KafkaError

    _produce(secure_dir, "tools", kafka_topics["events_topic"])
    error = _consume_one(secure_dir, "decider", kafka_topics["events_topic"], f"{kafka_topics['consumer_group']}-projector")
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error


def test_the_projector_reads_the_ledger_in_its_group_but_not_the_events(secure_dir, kafka_topics):
    from confluent_kafka import KafkaError

    assert _produce(secure_dir, "decider", kafka_topics["ledger_topic"]) is None
    group = f"{kafka_topics['consumer_group']}-projector"
    message = _consume_one(secure_dir, "projector", kafka_topics["ledger_topic"], group)
    assert not hasattr(message, "code"), message
    _produce(secure_dir, "tools", kafka_topics["events_topic"])
    error = _consume_one(secure_dir, "projector", kafka_topics["events_topic"], group)
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_tools_cannot_create_or_delete_topics(secure_dir, kafka_topics):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(secure_profile.kafka_config(secure_dir, "tools"))
    with pytest.raises(KafkaException) as created:
        admin.create_topics([NewTopic(f"{kafka_topics['consumer_group']}.extra", 1, 1)],
                            request_timeout=TIMEOUT_S)[f"{kafka_topics['consumer_group']}.extra"].result(TIMEOUT_S)
    assert created.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as deleted:
        admin.delete_topics([kafka_topics["ledger_topic"]],
                            request_timeout=TIMEOUT_S)[kafka_topics["ledger_topic"]].result(TIMEOUT_S)
    assert deleted.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_tools_describe_the_worker_groups_and_read_the_dead_letters(secure_dir, kafka_topics):
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    assert _produce(secure_dir, "decider", kafka_topics["dlq_topic"]) is None
    admin = AdminClient(secure_profile.kafka_config(secure_dir, "tools"))
    group = f"{kafka_topics['consumer_group']}-decider"
    described = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S)[group].result(TIMEOUT_S)
    assert described.group_id == group
    admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                      request_timeout=TIMEOUT_S)[group].result(TIMEOUT_S)
    message = _consume_one(secure_dir, "tools", kafka_topics["dlq_topic"], f"{kafka_topics['consumer_group']}-decider")
    assert message is not None


@pytest.mark.parametrize("principal", ["decider", "projector"])
def test_each_worker_describes_every_roles_group(secure_dir, kafka_topics, principal):
    """The lag exporter counts the members of every role's group."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(secure_profile.kafka_config(secure_dir, principal))
    groups = [f"{kafka_topics['consumer_group']}-{role}" for role in ("decider", "projector", "all")]
    for group, future in admin.describe_consumer_groups(groups, request_timeout=TIMEOUT_S).items():
        assert future.result(TIMEOUT_S).group_id == group


def test_tools_read_the_ledger_by_assignment_as_the_replay_does(secure_dir, kafka_topics):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    assert _produce(secure_dir, "decider", kafka_topics["ledger_topic"]) is None
    consumer = Consumer(secure_profile.kafka_config(
        secure_dir, "tools", **{"group.id": f"ledger-replay-{uuid.uuid4().hex[:12]}", "enable.auto.commit": False}))
    try:
        consumer.assign([TopicPartition(kafka_topics["ledger_topic"], p, OFFSET_BEGINNING) for p in (0, 1)])
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
        assert message is not None and message.error() is None, message and message.error()
    finally:
        consumer.close()


def test_the_api_has_no_kafka_user(secure_dir):
    from confluent_kafka import KafkaError

    from tools.stack import credentials

    errors, _log = _refusal(secure_dir, "api", password=credentials.password(secure_dir, "api"))
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
