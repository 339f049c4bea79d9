"""The end-to-end harness: real Kafka, Cassandra and Redis, workers as real `ledger worker` processes,
and what the tests compare them with (the pure domain's outcomes for a scripted history)."""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from app.adapters.avro.mapping import decode_ledger_entry, decode_rejection
from app.adapters.kafka.lag import ConsumerLag
from app.adapters.kafka.producer import OutRecord
from app.adapters.kafka.publisher import EventPublisher
from app.adapters.redis.view_store import DEFAULT_NAMESPACE, decode_view, member_key
from app.bootstrap import group_id, kafka_connection, redis_sync_client
from app.config import REPO_ROOT, Settings
from app.domain.decide import Accepted, Rejected, step
from app.domain.state import MemberState
from app.domain.views import digest
from tests.support.domain_builders import DAY, HOUR, T0, acquire, deactivate, event, plan, release, renew
from tests.support.helpers import wait_until

PARTITIONS = 12
REDIS_DBS = range(10, 16)  # 0 is the local default (the demo), 9 the bench's (tools/bench/runner.py)


@contextlib.contextmanager
def redis_db_lease(timeout: float = 600.0):
    """A Redis DB that no other test holds, in this process or another (a lock file per DB), for
    as long as the block runs: end-to-end tests flush and fill a whole DB."""
    deadline = time.monotonic() + timeout
    while True:
        for db in REDIS_DBS:
            handle = open(Path(tempfile.gettempdir()) / f"download-ledger-redis-db-{db}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield db
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"every Redis DB in {REDIS_DBS} stayed taken for {timeout:.0f}s")
        time.sleep(0.5)


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

    def terminate_within(self, seconds: float) -> float | None:
        """SIGTERM, then how long the process took to exit (None: still running after ``seconds``,
        then it is killed)."""
        started = time.monotonic()
        self.process.terminate()
        try:
            self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        return time.monotonic() - started

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Pipeline:
    settings: Settings
    env: dict[str, str]
    tmp: Path
    admin: object
    cassandra: object
    workers: list[Worker] = field(default_factory=list)
    _redis_client: object = field(default=None, repr=False)

    def start_worker(self, role: str = "all", metrics_port: int = 0, loglevel: str = "warning", **env: str) -> Worker:
        """A `ledger worker` process with the pipeline's settings (``env`` overrides some), serving
        /metrics (with the lag gauges), /healthz and /readyz on ``metrics_port`` (0: none)."""
        log = self.tmp / f"worker-{len(self.workers)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "worker", "--role", role, "--metrics-port", str(metrics_port),
             "--loglevel", loglevel],
            cwd=REPO_ROOT, env={**os.environ, **self.env, **env}, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        worker = Worker(process, log)
        self.workers.append(worker)
        return worker

    def publish(self, events) -> None:
        publisher = EventPublisher(kafka_connection(self.settings), self.settings.events_topic)
        try:
            publisher.publish(events)
        finally:
            publisher.close()

    def publish_raw(self, records: list[tuple]) -> None:
        """(key, value[, message timestamp in ms[, headers]]) each, in order (timestamp None: now)."""
        publisher = EventPublisher(kafka_connection(self.settings), self.settings.events_topic)
        try:
            publisher.publish_raw([OutRecord(self.settings.events_topic, r[0], r[1],
                                             timestamp=r[2] if len(r) > 2 else None,
                                             headers=tuple(r[3]) if len(r) > 3 else ()) for r in records])
        finally:
            publisher.close()

    # --- reading the outputs ------------------------------------------------------------

    def consume_all(self, topic: str) -> list:
        """Every message of a topic from the beginning up to its current end."""
        consumer = Consumer({**kafka_connection(self.settings).librdkafka(),
                             "group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False})
        try:
            starts, ends = {}, {}
            for p in range(PARTITIONS):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    starts[p], ends[p] = low, high
            consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
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

    def redis(self):
        """A sync client of the pipeline's Redis: one node, or the cluster profile's Redis Cluster."""
        if self._redis_client is None:
            self._redis_client = redis_sync_client(self.settings)
        return self._redis_client

    def view(self, member_id: str) -> MemberState | None:
        raw = self.redis().hget(member_key(DEFAULT_NAMESPACE, member_id), "state")
        return None if raw is None else decode_view(raw)

    def stored_rows(self, member_id: str, timeout: float = 60.0):
        """The member's event-store rows. After a Cassandra restart the harness's own session may still
        be between reconnection attempts (the workers' may have been luckier): retried until ``timeout``."""
        from cassandra.cluster import NoHostAvailable

        from app.adapters.cassandra.event_store import TABLE, bucket_of, event_buckets

        deadline = time.monotonic() + timeout
        ks = self.settings.cassandra_keyspace
        while True:
            try:
                bucket = bucket_of(member_id, event_buckets(self.cassandra, ks))
                return list(self.cassandra.execute(
                    f"SELECT seq, sub, kind, event_id FROM {ks}.{TABLE} WHERE bucket = %s AND member_id = %s "
                    "AND seq >= 0", (bucket, member_id)))
            except NoHostAvailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def wait_for_views(self, expected: dict[str, MemberState], timeout: float = 120.0) -> None:
        """Until every member's Redis view has reached the expected seq. A timeout names the members
        behind, with their view's, stored and expected seqs and the workers' last log lines: a
        pipeline that stalled and one that decided an event differently look alike otherwise."""
        behind: dict[str, int | None] = {}

        def caught_up():
            client = self.redis()
            pipe = client.pipeline(transaction=False)
            for m in expected:
                pipe.hget(member_key(DEFAULT_NAMESPACE, m), "seq")
            seqs = [None if s is None else int(s) for s in pipe.execute()]
            behind.clear()
            behind.update({m: s for m, s in zip(expected, seqs) if s is None or s < expected[m].seq})
            return not behind

        try:
            wait_until(caught_up, timeout, interval=0.5, message="views to reach the expected seq")
        except pytest.fail.Exception as exc:
            pytest.fail(f"{exc.msg}: {self._describe_behind(behind, expected)}")

    def _describe_behind(self, behind: dict[str, int | None], expected: dict[str, MemberState]) -> str:
        lines = [f"{len(behind)} of {len(expected)} members behind"]
        for m in list(behind)[:5]:
            try:
                stored = max((r.seq for r in self.stored_rows(m, timeout=5) if r.kind == "accepted"), default=0)
            except Exception as exc:  # noqa: BLE001 - a description, not a check
                stored = f"unread ({type(exc).__name__})"
            lines.append(f"  {m}: view seq {behind[m]}, stored seq {stored}, expected {expected[m].seq}")
        try:
            lines.extend(self._trace_ledger(list(behind)[:5]))
        except Exception as exc:  # noqa: BLE001 - a description, not a check
            lines.append(f"  (ledger trace failed: {type(exc).__name__}: {exc})")
        for w in self.workers:
            tail = w.log_text().splitlines()[-8:]
            lines.append(f"  {w.log.name} (alive: {w.alive}), last lines:\n    " + "\n    ".join(tail))
        return "\n".join(lines)

    def _trace_ledger(self, members: list[str]) -> list[str]:
        """Where each member's ledger entries went and how far the projector got there: the entries'
        partition and offsets, the projector's durable progress and the group's committed offset of
        that partition, and the member's Cassandra summary seq. A projector that skipped entries and
        one that never received them look alike from the view alone."""
        wanted = set(members)
        located: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # member: (partition, offset, seq)
        for msg in self.consume_all(self.settings.ledger_topic):
            entry = decode_ledger_entry(msg.value())
            if entry.recorded.event.member_id in wanted:
                located[entry.recorded.event.member_id].append((msg.partition(), msg.offset(), entry.recorded.seq))
        ks = self.settings.cassandra_keyspace
        progress = {r.partition: r.next_offset for r in self.cassandra.execute(
            f"SELECT partition, next_offset FROM {ks}.decider_progress WHERE topic = %s", (self.settings.ledger_topic,))}
        partitions = sorted({p for found in located.values() for p, _, _ in found})
        lag = ConsumerLag(kafka_connection(self.settings))
        try:
            committed = {group: {p: o for (t, p), o in lag.committed(group).items() if t == self.settings.ledger_topic}
                         for group in (group_id(self.settings, "all"), group_id(self.settings, "projector"))}
        finally:
            lag.close()
        lines = []
        for m in members:
            summary = list(self.cassandra.execute(
                f"SELECT seq FROM {ks}.rm_{DEFAULT_NAMESPACE}_member_summary WHERE member_id = %s", (m,)))
            found = ", ".join(f"p{p}@{o} seq {s}" for p, o, s in located.get(m, [])) or "none"
            lines.append(f"  {m}: ledger entries {found}; Cassandra summary seq "
                         f"{summary[0].seq if summary else None}")
        for p in partitions:
            offsets = ", ".join(f"{group} {by_p[p]}" for group, by_p in committed.items() if p in by_p) or "none"
            lines.append(f"  ledger p{p}: projector durable progress {progress.get(p)}, committed offsets: {offsets}")
        return lines


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



def scripted_history(prefix: str):
    """Every rule and rejection reason of DOMAIN.md, spread over a few members."""
    a, b, c, d = (f"{prefix}-{x}" for x in "abcd")
    return [
        # a: device limits, downloads per device, renewals, releases, deactivation, late event
        event(plan(device_limit=2, downloads_per_device=2), at=T0, member=a),
        event(acquire("l1", device="d1", title="t1"), at=T0 + 1, member=a),
        event(acquire("l1", device="d1", title="t1"), at=T0 + 2, member=a),                  # LICENSE_ID_CONFLICT
        event(acquire("l2", device="d2", expires=T0 + 3), at=T0 + 3, member=a),              # ALREADY_EXPIRED
        event(acquire("l2", device="d2"), at=T0 + 4, member=a),
        event(acquire("l3", device="d3"), at=T0 + 5, member=a),                              # DEVICE_LIMIT
        event(acquire("l3", device="d1"), at=T0 + 6, member=a),
        event(acquire("l4", device="d1"), at=T0 + 7, member=a),                              # DEVICE_DOWNLOAD_LIMIT
        event(renew("nope"), at=T0 + 8, member=a),                                            # UNKNOWN_LICENSE
        event(release("l3"), at=T0 + 9, member=a),
        event(renew("l3"), at=T0 + 10, member=a),                                             # LICENSE_RELEASED
        event(release("l3"), at=T0 + 11, member=a),                                           # LICENSE_RELEASED
        event(renew("l1", expires=T0 + 40 * DAY), at=T0 + 12, member=a),
        event(plan(device_limit=1, downloads_per_device=1), at=T0 + 13, member=a),           # downgrade keeps licenses
        event(deactivate("d2"), at=T0 + 14, member=a),
        event(acquire("l5", device="d9"), at=T0 - DAY, member=a),                             # late: clock stays
        # b: renewal limit, a renewal counting toward the title's yearly limit, expired renewal
        event(acquire("k1", device="d1", title="t7", max_renewals=1, title_yearly_limit=3,
                      expires=T0 + HOUR), at=T0, member=b),
        event(renew("k1", expires=T0 + 2 * HOUR), at=T0 + 1, member=b),
        event(renew("k1", expires=T0 + 3 * HOUR), at=T0 + 2, member=b),                      # RENEWAL_LIMIT
        event(acquire("k2", device="d1", title="t7", title_yearly_limit=3), at=T0 + 3, member=b),
        event(acquire("k3", device="d1", title="t7", title_yearly_limit=3), at=T0 + 4, member=b),  # TITLE_YEARLY_LIMIT
        event(renew("k2", expires=T0 + 5), at=T0 + 10, member=b),                            # ALREADY_EXPIRED
        # c: studio limit and monthly limit, renewal counts toward the month
        event(plan(device_limit=4, monthly_limit=3), at=T0, member=c),
        event(acquire("s1", device="d1", studio="st", studio_concurrent_limit=1), at=T0 + 1, member=c),
        event(acquire("s2", device="d2", studio="st", studio_concurrent_limit=1), at=T0 + 2, member=c),  # STUDIO_CONCURRENT_LIMIT
        event(renew("s1"), at=T0 + 3, member=c),
        event(acquire("s3", device="d3", studio="x"), at=T0 + 4, member=c),
        event(acquire("s4", device="d4", studio="y"), at=T0 + 5, member=c),                  # MONTHLY_LIMIT
        # d: an expired license renewed re-checks the device limit
        event(acquire("r1", device="d1", expires=T0 + HOUR), at=T0, member=d),
        event(acquire("r2", device="d2", expires=T0 + 10 * DAY), at=T0 + 2 * HOUR, member=d),
        event(renew("r1", expires=T0 + 20 * DAY), at=T0 + 3 * HOUR, member=d),               # DEVICE_LIMIT
    ]


EXPECTED_REASONS = {
    "LICENSE_ID_CONFLICT", "ALREADY_EXPIRED", "DEVICE_LIMIT", "DEVICE_DOWNLOAD_LIMIT", "UNKNOWN_LICENSE",
    "LICENSE_RELEASED", "RENEWAL_LIMIT", "TITLE_YEARLY_LIMIT", "STUDIO_CONCURRENT_LIMIT", "MONTHLY_LIMIT",
}


def _rows_text(rows) -> str:
    """A member's stored rows as (seq, sub, kind, event_id): this module is not rewritten by pytest,
    so an assertion shows only its message."""
    return ", ".join(f"({r.seq}, {r.sub}, {r.kind}, {r.event_id})" for r in rows)


def assert_exact_outputs(pipeline, events):
    states, outcomes = expected_states(events)
    pipeline.wait_for_views(states)

    for member_id, state in states.items():
        view = pipeline.view(member_id)
        assert view is not None and digest(view) == digest(state), f"view of {member_id}"
        rows = pipeline.stored_rows(member_id)
        accepted = [r for r in rows if r.kind == "accepted"]
        assert [r.seq for r in accepted] == list(range(1, state.seq + 1)), (
            f"stored accepted seqs of {member_id} are not 1..{state.seq}: {_rows_text(rows)}")
        assert len({r.event_id for r in rows}) == len(rows), f"an event stored twice for {member_id}: {_rows_text(rows)}"

    ledger = pipeline.ledger_entries()
    by_member = defaultdict(dict)
    for entry in ledger:
        seq, event_id = entry.recorded.seq, entry.recorded.event.event_id
        member_id = entry.recorded.event.member_id
        assert by_member[member_id].setdefault(seq, event_id) == event_id, (
            f"two events at seq {seq} of {member_id} on the ledger: {by_member[member_id][seq]}, {event_id}")
    for member_id, state in states.items():
        assert sorted(by_member[member_id]) == list(range(1, state.seq + 1)), (
            f"ledger seqs of {member_id} are not 1..{state.seq}: {sorted(by_member[member_id])}")
    accepted_ids = {e for m in by_member.values() for e in m.values()}
    assert accepted_ids == {e for e, o in outcomes.items() if o == "accepted"}

    rejected = {r.event.event_id: r.reason for r in pipeline.rejections()}
    assert rejected == {e: o for e, o in outcomes.items() if o != "accepted"}
    return states, outcomes, rejected


