"""End-to-end harness: real Kafka, Cassandra and Redis, workers as real `ledger worker` processes.

Each test gets its own topics, consumer group and Redis database, and member ids of its own in a
keyspace shared by the session, so tests never see each other's data.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

from app.adapters.avro.mapping import decode_ledger_entry, decode_rejection
from app.adapters.kafka.producer import OutRecord
from app.adapters.kafka.publisher import EventPublisher
from app.adapters.redis.view_store import DEFAULT_NAMESPACE, decode_view, member_key
from app.config import REPO_ROOT, Settings
from app.domain.decide import Accepted, Rejected, step
from app.domain.state import MemberState
from tests.helpers import wait_until

PARTITIONS = 12
_redis_dbs = itertools.cycle(range(10, 16))


@dataclass
class Worker:
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Pipeline:
    settings: Settings
    env: dict[str, str]
    tmp: Path
    admin: object
    cassandra: object
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, role: str = "all") -> Worker:
        log = self.tmp / f"worker-{len(self.workers)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "worker", "--role", role, "--metrics-port", "0"],
            cwd=REPO_ROOT, env={**os.environ, **self.env}, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        worker = Worker(process, log)
        self.workers.append(worker)
        return worker

    def publish(self, events) -> None:
        publisher = EventPublisher(self.settings.kafka_bootstrap, self.settings.events_topic)
        try:
            publisher.publish(events)
        finally:
            publisher.close()

    def publish_raw(self, records: list[tuple]) -> None:
        """(key, value) or (key, value, message timestamp in ms) each, in order."""
        publisher = EventPublisher(self.settings.kafka_bootstrap, self.settings.events_topic)
        try:
            publisher.publish_raw([OutRecord(self.settings.events_topic, r[0], r[1],
                                             timestamp=r[2] if len(r) > 2 else None) for r in records])
        finally:
            publisher.close()

    # --- reading the outputs ------------------------------------------------------------

    def consume_all(self, topic: str) -> list:
        """Every message of a topic from the beginning up to its current end."""
        consumer = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap,
                             "group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False})
        try:
            ends = {}
            for p in range(PARTITIONS):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    ends[p] = high
            consumer.assign([TopicPartition(topic, p, 0) for p in ends])
            got, done = [], {p: False for p in ends}
            wait_until(lambda: self._drain(consumer, got, ends, done), 60, message=f"reading {topic}")
            return got
        finally:
            consumer.close()

    @staticmethod
    def _drain(consumer, got, ends, done) -> bool:
        for msg in consumer.consume(1000, timeout=0.5):
            if msg.error():
                continue
            got.append(msg)
            if msg.offset() + 1 >= ends[msg.partition()]:
                done[msg.partition()] = True
        return all(done.values())

    def ledger_entries(self):
        return [decode_ledger_entry(m.value()) for m in self.consume_all(self.settings.ledger_topic)]

    def rejections(self):
        return [decode_rejection(m.value()) for m in self.consume_all(self.settings.rejections_topic)]

    def dead_letters(self):
        return self.consume_all(self.settings.dlq_topic)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url)

    def view(self, member_id: str) -> MemberState | None:
        raw = self.redis().hget(member_key(DEFAULT_NAMESPACE, member_id), "state")
        return None if raw is None else decode_view(raw)

    def stored_rows(self, member_id: str):
        return list(self.cassandra.execute(
            f"SELECT seq, sub, kind, event_id FROM {self.settings.cassandra_keyspace}.member_events "
            "WHERE member_id = %s", (member_id,)))

    def wait_for_views(self, expected: dict[str, MemberState], timeout: float = 120.0) -> None:
        """Until every member's Redis view has reached the expected seq."""
        def caught_up():
            client = self.redis()
            pipe = client.pipeline(transaction=False)
            for m in expected:
                pipe.hget(member_key(DEFAULT_NAMESPACE, m), "seq")
            seqs = pipe.execute()
            return all(s is not None and int(s) >= expected[m].seq for m, s in zip(expected, seqs))
        wait_until(caught_up, timeout, interval=0.5, message="views to reach the expected seq")


def expected_states(events) -> tuple[dict[str, MemberState], dict[str, str]]:
    """The oracle: decide every member's events in publish order with the pure domain.

    Returns the final states and the expected outcome by event id ('accepted' or the reason)."""
    states: dict[str, MemberState] = {}
    outcomes: dict[str, str] = {}
    for ev in events:
        state = states.get(ev.member_id) or MemberState.empty(ev.member_id)
        decision, states[ev.member_id] = step(state, ev)
        if isinstance(decision, Accepted):
            outcomes[ev.event_id] = "accepted"
        elif isinstance(decision, Rejected):
            outcomes[ev.event_id] = str(decision.reason)
    return states, outcomes


@pytest.fixture
def pipeline(tmp_path, kafka_admin, cassandra, test_keyspace, settings):
    suffix = uuid.uuid4().hex[:8]
    db = next(_redis_dbs)
    env = {
        "LEDGER_EVENTS_TOPIC": f"e2e.{suffix}.events",
        "LEDGER_LEDGER_TOPIC": f"e2e.{suffix}.ledger",
        "LEDGER_REJECTIONS_TOPIC": f"e2e.{suffix}.rejections",
        "LEDGER_DLQ_TOPIC": f"e2e.{suffix}.dlq",
        "LEDGER_CONSUMER_GROUP": f"e2e-{suffix}",
        "LEDGER_CASSANDRA_KEYSPACE": test_keyspace,
        "LEDGER_REDIS_URL": f"redis://127.0.0.1:6379/{db}",
        "LEDGER_SESSION_TIMEOUT_S": "6",
        "LEDGER_BATCH_WAIT_MS": "50",
    }
    p_settings = settings.model_copy(update={
        "events_topic": env["LEDGER_EVENTS_TOPIC"], "ledger_topic": env["LEDGER_LEDGER_TOPIC"],
        "rejections_topic": env["LEDGER_REJECTIONS_TOPIC"], "dlq_topic": env["LEDGER_DLQ_TOPIC"],
        "cassandra_keyspace": test_keyspace, "redis_url": env["LEDGER_REDIS_URL"],
    })
    topics = [env[k] for k in ("LEDGER_EVENTS_TOPIC", "LEDGER_LEDGER_TOPIC", "LEDGER_REJECTIONS_TOPIC", "LEDGER_DLQ_TOPIC")]
    for f in kafka_admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics]).values():
        f.result(30)
    redis.Redis.from_url(env["LEDGER_REDIS_URL"]).flushdb()
    p = Pipeline(p_settings, env, tmp_path, kafka_admin, cassandra)
    yield p
    for w in p.workers:
        w.stop()
    for f in kafka_admin.delete_topics(topics).values():
        f.exception(30)
