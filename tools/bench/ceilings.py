"""The ceilings of this machine: how fast the stack itself goes with the plainest client code.

- Kafka: confluent-kafka consume rate of an events topic (a fresh consumer assigned to every
  partition reads everything that was produced to it).
- Cassandra: plain INSERT and conditional INSERT ... IF NOT EXISTS (a Paxos round, what the event
  store's append is) into ``member_events`` of a keyspace of the run, with cassandra-driver's
  ``execute_concurrent_with_args`` keeping ``concurrency`` statements in flight, the workers'
  consistency levels, and plain-tuple rows (`ceiling_session`).
- Redis: pipelined HSET of view-sized values, and pipelined EVALSHA of the projector's fenced-write
  script (what the projector sends per member).

Every figure records the CPU share of the client (this process) and of the server over the
measurement, so the report can say which side bounds it on a 2-core machine.
"""
from __future__ import annotations

import os
import time
import uuid

from app.adapters.kafka.connection import KafkaConnection
from tools.bench.env import CpuMeter


def kafka_consume(connection: KafkaConnection, topic: str, expected: int, partitions: int, stack: dict[str, int],
                  timeout_s: float = 120.0) -> dict:
    """Read every message of ``topic`` (``expected`` of them) with a fresh consumer; messages/s."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({
        **connection.librdkafka(),
        "group.id": f"bench-ceiling-{uuid.uuid4().hex[:10]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.wait.max.ms": 100,
        "queued.min.messages": 200_000,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
    })
    count = nbytes = 0
    first = last = None
    first_batch = 0
    meter = CpuMeter({"client": os.getpid(), **{k: v for k, v in stack.items() if k == "kafka"}})
    try:
        started = time.monotonic()
        meter.start()
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = started + timeout_s
        while count < expected and time.monotonic() < deadline:
            batch = consumer.consume(1_000, timeout=0.1)
            for msg in batch:
                if msg.error():
                    continue
                value = msg.value()
                nbytes += len(value) if value else 0
                count += 1
            if batch:
                last = time.monotonic()
                if first is None:
                    first, first_batch = last, count
        meter.stop()
    finally:
        consumer.close()
    total = (last or started) - started
    steady = (last - first) if first is not None and last is not None else 0.0
    return {
        "messages": count,
        "bytes": nbytes,
        "seconds": round(total, 3),
        "setup_s": round((first or started) - started, 3),
        # from the assignment to the last message: a fresh consumer's connection and first fetch
        # included (librdkafka prefetches in the background, so "first batch to last" would only time
        # the reading of its local queue)
        "rate": count / total if total > 0 else 0.0,
        "rate_after_first_batch": (count - first_batch) / steady if steady > 0 else 0.0,
        "mb_per_s": nbytes / total / 1e6 if total > 0 else 0.0,
        "complete": count >= expected,
        "cpu_share": meter.shares,
    }


def _member_event_rows(prefix: str, n: int, payload: bytes) -> list[tuple]:
    return [(f"{prefix}{i:08d}", 1, 0, "A", f"{prefix}e{i}", 1_767_225_600_000 + i, "DownloadEvent.v2", payload,
             None, None, "bench.events", i % 12, i) for i in range(n)]


def ceiling_session(settings):
    """(cluster, session) like the workers' (LOCAL_QUORUM, LOCAL_SERIAL, token aware) but with the
    driver's cheapest row factory (plain tuples): the ceiling is the driver at its best."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
    from cassandra.query import tuple_factory

    from app.adapters.cassandra import session

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM, serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        request_timeout=30, row_factory=tuple_factory)
    cluster = Cluster(settings.cassandra_contact_points, port=settings.cassandra_port,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=5,
                      auth_provider=session.auth_provider(settings), ssl_context=session.tls_context(settings))
    return cluster, cluster.connect()


def cassandra_writes(session, keyspace: str, rows: int, concurrency: int, conditional: bool,
                     stack: dict[str, int], payload: bytes) -> dict:
    """INSERT (conditional or not) ``rows`` new member partitions of ``member_events``; statements/s."""
    from cassandra.concurrent import execute_concurrent_with_args

    columns = ("member_id, seq, sub, kind, event_id, clock, schema_version, payload, reason, detail, "
               "source_topic, source_partition, source_offset")
    cql = f"INSERT INTO {keyspace}.member_events ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    if conditional:
        cql += " IF NOT EXISTS"
    statement = session.prepare(cql)
    kind = "lwt" if conditional else "plain"
    tag = uuid.uuid4().hex[:6]
    warm = _member_event_rows(f"w{kind}{tag}-", min(1000, max(100, rows // 20)), payload)
    execute_concurrent_with_args(session, statement, warm, concurrency=concurrency)
    params = _member_event_rows(f"c{kind}{tag}-", rows, payload)
    meter = CpuMeter({"client": os.getpid(), **{k: v for k, v in stack.items() if k == "cassandra"}})
    meter.start()
    started = time.monotonic()
    results = execute_concurrent_with_args(session, statement, params, concurrency=concurrency,
                                           raise_on_first_error=False)
    seconds = time.monotonic() - started
    meter.stop()
    failed = sum(1 for ok, _ in results if not ok)
    applied = None
    if conditional:
        applied = sum(1 for ok, r in results if ok and r and r.one()[0])  # first column: [applied]
    return {
        "statements": rows,
        "failed": failed,
        "applied": applied,
        "seconds": round(seconds, 3),
        "rate": (rows - failed) / seconds if seconds > 0 else 0.0,
        "concurrency": concurrency,
        "payload_bytes": len(payload),
        "cpu_share": meter.shares,
    }


def redis_pipelined(settings, redis_url: str, writes: int, pipeline: int, value_bytes: int, stack: dict[str, int]) -> dict:
    """Pipelined HSET of view-sized values, then pipelined EVALSHA of the projector's fenced write."""
    from app.adapters.redis.view_store import FENCED_WRITE
    from app.bootstrap import redis_sync_client

    client = redis_sync_client(settings, redis_url)
    value = ("x" * value_bytes).encode()
    prefix = f"bench:ceiling:{uuid.uuid4().hex[:6]}"
    out = {}
    try:
        sha = client.script_load(FENCED_WRITE.source)
        for kind in ("hset", "fenced_script"):
            meter = CpuMeter({"client": os.getpid(), **{k: v for k, v in stack.items() if k == "redis"}})
            meter.start()
            started = time.monotonic()
            for base in range(0, writes, pipeline):
                pipe = client.pipeline(transaction=False)
                for i in range(base, min(base + pipeline, writes)):
                    key = f"{prefix}:{kind}:{i}"
                    if kind == "hset":
                        pipe.hset(key, mapping={"seq": 1, "state": value})
                    else:
                        pipe.evalsha(sha, 2, key, f"{prefix}:members", 1, value, str(i))
                pipe.execute()
            seconds = time.monotonic() - started
            meter.stop()
            out[kind] = {"writes": writes, "seconds": round(seconds, 3), "rate": writes / seconds,
                         "pipeline": pipeline, "value_bytes": value_bytes, "cpu_share": meter.shares}
        # leave nothing behind in the run's database (it is flushed at the end anyway)
        for kind in ("hset", "fenced_script"):
            for base in range(0, writes, 10_000):
                client.delete(*[f"{prefix}:{kind}:{i}" for i in range(base, min(base + 10_000, writes))])
        client.delete(f"{prefix}:members")
    finally:
        client.close()
    return out
