"""The event store's buckets follow the input partitions of keys published with librdkafka's default
partitioner (consistent_random: crc32(key) mod partitions), when the bucket count is a multiple of
the partition count: then a bucket's members all arrive in one input partition, and two workers
never contend for one bucket's Paxos round (app/adapters/cassandra/event_store.py)."""
from __future__ import annotations

import uuid

import pytest
import yaml
from confluent_kafka import Producer

from app.adapters.cassandra.event_store import bucket_of, event_buckets
from app.adapters.kafka.producer import producer_config
from app.bootstrap import kafka_connection
from app.config import REPO_ROOT

pytestmark = pytest.mark.stack


def test_every_environment_has_a_bucket_count_that_is_a_multiple_of_the_input_partitions():
    partitions = yaml.safe_load((REPO_ROOT / "topics" / "downloads.events.yaml").read_text())["partitions"]
    environments = yaml.safe_load((REPO_ROOT / "deploy" / "cql" / "environments.yaml").read_text())
    assert {name: env["event_buckets"] % partitions for name, env in environments.items()} == \
        dict.fromkeys(environments, 0)


def test_a_members_bucket_is_in_the_partition_librdkafka_puts_its_key_in(settings, temp_topic, cassandra,
                                                                         test_keyspace):
    buckets = event_buckets(cassandra, test_keyspace)
    partitions = 12
    assert buckets % partitions == 0
    topic = temp_topic(partitions)
    producer = Producer(producer_config(kafka_connection(settings)))
    placed: dict[str, int] = {}

    def delivered(err, msg):
        assert err is None, err
        placed[msg.key().decode()] = msg.partition()

    members = [f"m-{uuid.uuid4().hex[:12]}" for _ in range(300)] + ["member-1", "ünïcode-member"]
    for m in members:
        producer.produce(topic, key=m.encode(), value=b"x", on_delivery=delivered)
    assert producer.flush(30) == 0
    assert {m: bucket_of(m, buckets) % partitions for m in members} == placed
