"""What each Kafka principal needs, derived from the code: one expectation that both role policies
are held to, the secure local profile's (deploy/security/kafka-acls.txt) and the Kubernetes
KafkaUsers (deploy/k8s/base/kafka/users.yaml). A grant is (resource type, name, pattern type,
operation) in Strimzi's spelling: ("topic", "downloads.events", "literal", "Read")."""
from __future__ import annotations

import dataclasses
import inspect

from app import bootstrap
from app.adapters.kafka import lag as kafka_lag
from app.adapters.kafka import ledger_reader
from app.adapters.kafka.connection import KafkaConnection
from app.config import Settings

Grant = tuple[str, str, str, str]

# A consumer that is only assigned still looks up its (random, never joined) group's coordinator: the
# lag readers' group ids (app/adapters/kafka/lag.py) and the replay's and DLQ's (ledger_reader.py).
LAG_GROUP_PREFIX = "ledger-lag-"
REPLAY_GROUP_PREFIX = ledger_reader.consumer_config(KafkaConnection("unused:9092"))["group.id"].rsplit("-", 1)[0] + "-"


def expected_kafka_acls(settings: Settings) -> dict[str, set[Grant]]:
    """By role: decider, projector, tools (the operator's commands), topics-check (`ledger topics diff`)."""
    assert f'"group.id": f"{LAG_GROUP_PREFIX}' in inspect.getsource(kafka_lag), "the lag readers' group id changed"
    groups = bootstrap.worker_groups(settings)
    every_topic = (settings.events_topic, settings.ledger_topic, settings.rejections_topic, settings.dlq_topic)
    lag_reader = {("group", LAG_GROUP_PREFIX, "prefix", "Describe")}

    def worker(role: str) -> set[Grant]:
        own = bootstrap.group_id(settings, role)
        return ({("topic", t, "literal", op) for t in bootstrap.role_topics(settings, role) for op in ("Describe", "Read")}
                | {("group", own, "literal", "Read")}
                | {("group", g, "literal", "Describe") for g in groups if g != own}     # the lag exporter
                | lag_reader)

    outputs = dataclasses.astuple(bootstrap.output_topics(settings))
    describe = {("topic", t, "literal", op) for t in every_topic for op in ("Describe", "DescribeConfigs")}
    return {
        "decider": worker("decider") | {("topic", t, "literal", op) for t in outputs for op in ("Describe", "Write")},
        "projector": worker("projector"),
        "topics-check": describe,                                                         # ledger topics diff
        "tools": (describe
                  | {("topic", t, "literal", "Read") for t in every_topic}               # status, replay, dlq
                  | {("topic", settings.events_topic, "literal", "Write")}              # dlq redrive, publish
                  | {("group", g, "literal", "Describe") for g in groups}                # status
                  | lag_reader | {("group", REPLAY_GROUP_PREFIX, "prefix", "Describe")}),
    }


def with_implied(grants: set[Grant]) -> set[Grant]:
    """Kafka's implied Describe: Read or Write on a topic, Read on a group."""
    return grants | {(kind, name, pattern, "Describe") for kind, name, pattern, op in grants if op in ("Read", "Write")}
