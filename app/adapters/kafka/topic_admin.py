"""Reads and changes topics on a cluster with confluent-kafka's AdminClient."""
from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from app.adapters.kafka.connection import KafkaConnection
from app.adapters.kafka.topic_spec import ActualTopic, Plan, TopicSpec

TIMEOUT_S = 30  # every admin request, and our wait for its result


def admin_config(connection: KafkaConnection) -> dict:
    """Requests to the brokers give up after TIMEOUT_S (librdkafka's default socket.timeout.ms is 60 s,
    longer than we wait for any result)."""
    return {**connection.librdkafka(), "socket.timeout.ms": TIMEOUT_S * 1000}


def admin_client(connection: KafkaConnection) -> AdminClient:
    return AdminClient(admin_config(connection))


def describe(admin: AdminClient, names: list[str]) -> dict[str, ActualTopic]:
    metadata = admin.list_topics(timeout=TIMEOUT_S)
    present = [n for n in names if n in metadata.topics]
    if not present:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in present]
    configs = {r.name: f.result(TIMEOUT_S)
               for r, f in admin.describe_configs(resources, request_timeout=TIMEOUT_S).items()}
    return {
        n: ActualTopic(n, len(metadata.topics[n].partitions), {k: e.value for k, e in configs[n].items()})
        for n in present
    }


def apply(admin: AdminClient, plan: Plan, specs: list[TopicSpec]) -> None:
    if plan.create:
        futures = admin.create_topics([
            NewTopic(t.name, num_partitions=t.partitions, replication_factor=t.replication_factor, config=t.config)
            for t in plan.create
        ], request_timeout=TIMEOUT_S)
        _wait(futures)
    if plan.add_partitions:
        _wait(admin.create_partitions([NewPartitions(name, new) for name, _, new in plan.add_partitions],
                                      request_timeout=TIMEOUT_S))
    by_topic: dict[str, list[ConfigEntry]] = {}
    for name, key, _, new in plan.alter_config:
        by_topic.setdefault(name, []).append(
            ConfigEntry(key, new, incremental_operation=AlterConfigOpType.SET))
    if by_topic:
        resources = [ConfigResource(ResourceType.TOPIC, n, incremental_configs=entries)
                     for n, entries in by_topic.items()]
        _wait(admin.incremental_alter_configs(resources, request_timeout=TIMEOUT_S))


def _wait(futures: dict) -> None:
    errors = []
    for key, future in futures.items():
        try:
            future.result(TIMEOUT_S)
        except KafkaException as exc:
            errors.append(f"{getattr(key, 'name', key)}: {exc.args[0].str() if exc.args else exc}")
    if errors:
        raise RuntimeError("; ".join(errors))
