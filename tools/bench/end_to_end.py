"""End to end: one `ledger worker --role all` process (decider + projector) over a simulator workload.

Throughput: the workload is published first (as fast as Kafka takes it), then the worker starts. The
clock starts at the first decider progress row in Cassandra (the decider saves its input position
after every batch) and stops when every member's Redis view holds the seq the pure domain predicts
(the oracle: every member's events decided in publish order). Events counted are those decided after
the clock started, so the worker's start-up (imports, group join) is not in the figure. Views are
then checked against the oracle, field by field (the view digest), outside the timing.

Latency: with the same worker running, `ledger simulate` publishes a fresh workload at a fixed rate
(half the measured throughput) in its own process, and probe events (PlanChanged, always accepted)
for dedicated probe members go out every few milliseconds. A probe's latency is from the moment it
was handed to the producer to the moment its member's Redis view shows its seq (polled every 2 ms).
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from app.adapters.kafka.connection import KafkaConnection
from app.bootstrap import kafka_connection
from tools.bench.env import BenchEnv, BenchError, CpuMeter, Pipeline, Process, WorkerGroup, percentile
from tools.bench.profiling import Profiler

POLL_S = 0.2
STALL_S = 120.0
VIEW_CHUNK = 5_000


# --- the workload and its oracle -----------------------------------------------------------


@dataclass
class Workload:
    config: object  # WorkloadConfig
    items: list
    expected: dict[str, object]  # member_id -> final MemberState (members with at least one accepted event)
    kinds: dict[str, int]
    outcomes: dict[str, int]  # accepted / rejected / duplicate / dead_letter
    members_touched: int = 0  # members with at least one well-formed event (what the decider caches)

    @property
    def size(self) -> int:
        return len(self.items)

    @property
    def accepted(self) -> int:
        return self.outcomes.get("accepted", 0)


def decide_items(items) -> tuple[dict, Counter[str], Counter[str]]:
    """The pure domain's decision of ``items`` (any iterable, consumed once): the final state of every
    member with a well-formed event, the items by kind, and the outcomes (accepted / rejected /
    duplicate / dead_letter)."""
    from app.domain.decide import Accepted, Rejected, step
    from app.domain.state import MemberState
    from tools.simulate.workload import EVENT_KINDS

    states: dict[str, MemberState] = {}
    kinds: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for item in items:
        kinds[item.kind.value] += 1
        if item.kind not in EVENT_KINDS:
            outcomes["dead_letter"] += 1
            continue
        ev = item.event
        state = states.get(ev.member_id) or MemberState.empty(ev.member_id)
        decision, states[ev.member_id] = step(state, ev)
        if isinstance(decision, Accepted):
            outcomes["accepted"] += 1
        elif isinstance(decision, Rejected):
            outcomes["rejected"] += 1
        else:
            outcomes["duplicate"] += 1
    return states, kinds, outcomes


def prepare_workload(config) -> Workload:
    """Generate the items and decide them with the pure domain (the oracle of the run)."""
    from tools.simulate.workload import generate

    items = list(generate(config))
    states, kinds, outcomes = decide_items(items)
    expected = {m: s for m, s in states.items() if s.seq > 0}
    return Workload(config, items, expected, dict(kinds), dict(outcomes), len(states))


def publish_workload(workload: Workload, connection: KafkaConnection, topic: str, echo=print) -> dict:
    from tools.simulate.publish import publish

    stats = publish(workload.items, connection, topic)
    echo(f"  published {stats.items:,} items to {topic} in {stats.elapsed_s:.1f} s ({stats.rate:,.0f}/s)")
    return {"items": stats.items, "seconds": round(stats.elapsed_s, 3), "rate": stats.rate}


# --- watching the pipeline ---------------------------------------------------------------------


class DeciderProgress:
    """The decider's durable input position (next offset per partition), read from Cassandra."""

    def __init__(self, session, keyspace: str, topic: str):
        self.session = session
        self.topic = topic
        self._select = session.prepare(f"SELECT partition, next_offset FROM {keyspace}.decider_progress WHERE topic = ?")

    def offsets(self) -> dict[int, int]:
        return {r.partition: r.next_offset for r in self.session.execute(self._select, (self.topic,))}

    def done(self) -> int:
        return sum(self.offsets().values())


class Views:
    """Seq of members' Redis views in the default namespace, read in pipelined chunks."""

    def __init__(self, redis_client, ns: str = "v1"):
        from app.adapters.redis.view_store import member_key

        self.client = redis_client
        self.ns = ns
        self._key = member_key

    def seqs(self, members: list[str]) -> list[int]:
        out: list[int] = []
        for i in range(0, len(members), VIEW_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for m in members[i:i + VIEW_CHUNK]:
                pipe.hget(self._key(self.ns, m), "seq")
            out.extend(int(s) if s is not None else 0 for s in pipe.execute())
        return out

    def incomplete(self, expected: dict[str, int], members: list[str]) -> list[str]:
        return [m for m, s in zip(members, self.seqs(members)) if s < expected[m]]

    def states(self, members: list[str]) -> dict[str, object]:
        from app.adapters.view_json import decode_view

        out = {}
        for i in range(0, len(members), VIEW_CHUNK):
            chunk = members[i:i + VIEW_CHUNK]
            pipe = self.client.pipeline(transaction=False)
            for m in chunk:
                pipe.hget(self._key(self.ns, m), "state")
            for m, raw in zip(chunk, pipe.execute()):
                if raw is not None:
                    out[m] = decode_view(raw)
        return out


def check_views(views: Views, expected: dict[str, object]) -> dict:
    """Every member's view against the oracle (the view digest); untimed."""
    from app.domain.views import digest

    members = list(expected)
    got = views.states(members)
    missing = [m for m in members if m not in got]
    differ = [m for m in members if m in got and digest(got[m]) != digest(expected[m])]
    return {"members": len(members), "missing": len(missing), "differ": len(differ),
            "examples": (missing + differ)[:5], "ok": not missing and not differ}


def _wait_rows(progress: DeciderProgress, worker: Process | WorkerGroup, deadline: float) -> None:
    while not progress.offsets():
        worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{worker.name} made no progress in time; log {worker.log}:\n{worker.tail()}")
        time.sleep(0.02)


# --- throughput -------------------------------------------------------------------------------


def _wait_settled(env: BenchEnv, pipeline: Pipeline, roles: tuple[str, ...], worker: Process | WorkerGroup,
                  deadline: float) -> None:
    group = pipeline.faust_group(roles[0])
    while not env.group_settled(group, len(roles), pipeline.events_topic):
        worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"consumer group {group} did not settle with {len(roles)} workers")
        time.sleep(POLL_S)


def meter_pids(worker: Process | WorkerGroup) -> dict[str, int]:
    """The pids a CpuMeter watches for a worker: ``worker``, or one per role of a group."""
    return worker.meter_pids() if isinstance(worker, WorkerGroup) else {"worker": worker.pid}


def run_throughput(env: BenchEnv, pipeline: Pipeline, workload: Workload, *, timeout_s: float,
                   profile_to=None, roles: tuple[str, ...] = ("all",),
                   echo=print) -> tuple[dict, Process | WorkerGroup]:
    """Start a worker (or a process per role of ``roles``) on the pre-published workload and time it
    to the last view. Returns the figures and the still-running worker (for the latency phase)."""
    total = workload.size
    expected_seq = {m: s.seq for m, s in workload.expected.items()}
    members = list(expected_seq)
    progress = DeciderProgress(env.session, pipeline.keyspace, pipeline.events_topic)
    redis_client = env.redis()
    views = Views(redis_client)

    spawned = time.monotonic()
    worker = env.start_workers(pipeline, roles)
    deadline = spawned + timeout_s
    _wait_rows(progress, worker, spawned + 120)
    if len(set(roles)) < len(roles):
        # Workers of one role share a group: the first to join decides a batch before the others join and
        # the group rebalances. The clock starts once every worker owns its partitions.
        _wait_settled(env, pipeline, roles, worker, spawned + 120)
    t_start = time.monotonic()
    done_at_start = progress.done()
    meter = CpuMeter({**meter_pids(worker), **env.stack}).start()
    profiler = Profiler(worker.pid, profile_to, echo=echo).start() if profile_to and isinstance(worker, Process) \
        else None
    echo(f"  worker up after {t_start - spawned:.1f} s; first batch: {done_at_start:,} events")

    last_echo = t_start
    done = done_at_start
    stall = Stall(worker, "the decider")
    while done < total:
        worker.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"the decider did not finish {total:,} events within {timeout_s:.0f} s "
                             f"({done:,} done)")
        time.sleep(POLL_S)
        done = progress.done()
        stall.check(done)
        now = time.monotonic()
        if now - last_echo >= 10:
            last_echo = now
            echo(f"  decided {done:,}/{total:,} ({(done - done_at_start) / (now - t_start):,.0f} events/s)")
    t_decided = time.monotonic()
    hwm_decided = worker.status().get("VmHWM", 0)

    # Views. While the projector is far behind, watch its committed offsets on the ledger (one small
    # request): reading every member's view seq from Redis again and again would take CPU from the
    # worker on a 2-core machine. Near the end, one pass over every member, then only the members
    # still behind, every 20 ms.
    ledger_end = env.end_offsets(pipeline.ledger_topic)
    group = pipeline.faust_group("all" if set(roles) == {"all"} else "projector")
    near = max(4 * pipeline.batch_size, 2_000)
    stall = Stall(worker, "the projector")
    while (lag := _lag(env.committed_offsets(group, pipeline.ledger_topic), ledger_end)) > near:
        worker.check_alive()
        stall.check(-lag)
        if time.monotonic() > deadline:
            raise BenchError(f"the projector is {lag:,} entries behind after {timeout_s:.0f} s")
        time.sleep(0.25)
    pending = views.incomplete(expected_seq, members)
    while pending:
        worker.check_alive()
        stall.check(-len(pending))
        if time.monotonic() > deadline:
            raise BenchError(f"{len(pending):,} views did not reach their seq within {timeout_s:.0f} s")
        time.sleep(0.02 if len(pending) < 2_000 else 0.5)
        pending = views.incomplete(expected_seq, pending)
    t_end = time.monotonic()
    shares = meter.stop()
    profile = profiler.stop() if profiler else None
    status = worker.status()
    statements = statements_per_event(env.statement_counts(worker, after=time.time()), total)

    counted = total - done_at_start
    seconds = t_end - t_start
    echo(f"  all {len(members):,} views complete {seconds:.1f} s after the first batch "
         f"({counted / seconds:,.0f} events/s; decider done at {t_decided - t_start:.1f} s)")
    check = check_views(views, workload.expected)
    redis_client.close()
    if not check["ok"]:
        echo(f"  WARNING: views differ from the oracle: {check}")
    result = {
        "events": total,
        "events_counted": counted,
        "members": workload.config.members,
        "members_with_views": len(members),
        "members_touched": workload.members_touched,
        "accepted": workload.accepted,
        "outcomes": workload.outcomes,
        "kinds": workload.kinds,
        "seconds": round(seconds, 3),
        "rate": counted / seconds,
        "decider_seconds": round(t_decided - t_start, 3),
        "decider_rate": counted / (t_decided - t_start) if t_decided > t_start else None,
        "views_lag_after_decider_s": round(t_end - t_decided, 3),
        "worker_startup_s": round(t_start - spawned, 3),
        "worker_vm_hwm_bytes": status.get("VmHWM", hwm_decided),
        "worker_vm_rss_bytes": status.get("VmRSS", 0),
        "cpu_share": shares,
        "views_check": check,
        "profile": profile,
        "statements": statements,
        "roles": list(roles),
    }
    if statements:
        echo(f"  Cassandra statements per input event: {statements['per_event']:.3f} "
             f"({statements['statements']:,} for {total:,} events)")
    return result, worker


def statements_per_event(counts: dict | None, events: int) -> dict | None:
    """The worker's Cassandra statements (every one it sent since it started, decider and projector)
    per input event (every message of the workload, dead letters included), in all and by kind."""
    if not counts or not events:
        return None
    by_kind = sorted(counts["by_kind"].items(), key=lambda kv: -kv[1])
    return {"statements": counts["statements"], "events": events, "per_event": counts["statements"] / events,
            "by_kind": {k: {"statements": n, "per_event": round(n / events, 4)} for k, n in by_kind}}


class Stall:
    """Fails the phase when a progress measure has not moved for ``seconds`` (a Faust agent that
    crashed leaves its worker process alive: waiting for the deadline would take many minutes)."""

    def __init__(self, worker: Process | WorkerGroup, what: str, seconds: float = STALL_S):
        self.worker = worker
        self.what = what
        self.seconds = seconds
        self.value = None
        self.since = time.monotonic()

    def check(self, value) -> None:
        now = time.monotonic()
        if value != self.value:
            self.value, self.since = value, now
        elif now - self.since > self.seconds:
            raise BenchError(f"{self.what} made no progress for {self.seconds:.0f} s; last lines of "
                             f"{self.worker.log}:\n{self.worker.tail()}")


def _lag(committed: dict[int, int], end: dict[int, int]) -> int:
    return sum(max(0, e - committed.get(p, 0)) for p, e in end.items())


# --- latency ----------------------------------------------------------------------------------


@dataclass
class _Probe:
    member: str
    seq: int
    sent: float  # monotonic hand-off to the producer; -1.0 for a probe not measured (warm-up)


@dataclass
class _ProbeState:
    outstanding: dict[str, _Probe] = field(default_factory=dict)
    timed: list[tuple[float, float]] = field(default_factory=list)  # (sent, latency s) of measured probes
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: bool = False


class Probes:
    """Probe events (PlanChanged, always accepted) for dedicated probe members. A probe's latency is
    from the moment it is handed to the producer to the moment its member's Redis view shows its seq
    (a thread polls the views of the members with probes in flight every ``poll_interval_ms``, 2 ms by
    default: a latency is at most that much late). Used by the latency phase and by the soak (which
    buckets the latencies by the minute the probe was sent in)."""

    POLL_INTERVAL_MS = 2

    def __init__(self, env: BenchEnv, pipeline: Pipeline, members: int, poll_interval_ms: float = POLL_INTERVAL_MS):
        from confluent_kafka import Producer

        from app.adapters.kafka.producer import producer_config

        self.topic = pipeline.events_topic
        self.run_id = env.run_id
        self.producer = Producer(producer_config(kafka_connection(env.settings), **{"linger.ms": 0}))
        self.members = [f"probe-{env.run_id}-{i:03d}" for i in range(members)]
        self.seqs = dict.fromkeys(self.members, 0)  # probes sent to each member (its expected view seq)
        self.sent = 0  # probes handed to the producer
        self.delivery_failures = 0  # probes the producer could not deliver
        self.state = _ProbeState()
        self._redis = env.redis()
        self._poller = threading.Thread(target=_poll_probes, args=(self.state, Views(self._redis), poll_interval_ms / 1000),
                                        daemon=True)

    def start(self) -> Probes:
        self._poller.start()
        return self

    def send(self, measured: bool = True) -> tuple[str, float]:
        """Hand one probe to the producer; returns its event id and send time (monotonic)."""
        from app.adapters.avro.mapping import encode_event
        from app.domain.events import DownloadEvent, PlanChanged

        member = self.members[self.sent % len(self.members)]
        self.sent += 1
        n = self.sent
        self.seqs[member] += 1
        event_id = f"probe-{self.run_id}-{n}"
        ev = DownloadEvent(event_id, member, int(time.time() * 1000), "bench-probe",
                           PlanChanged("probe", 1 + n % 3, 100, None))
        value = encode_event(ev)
        sent_at = time.monotonic()
        self.producer.produce(self.topic, value, member.encode(), on_delivery=self._delivered)
        self.producer.poll(0)
        with self.state.lock:
            self.state.outstanding[event_id] = _Probe(member, self.seqs[member], sent_at if measured else -1.0)
        return event_id, sent_at

    def _delivered(self, err, _msg) -> None:
        if err is not None:
            self.delivery_failures += 1

    def flush(self, timeout_s: float = 30.0) -> None:
        self.producer.flush(timeout_s)

    def drain(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until every probe sent has reached its view."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.state.lock:
                if not self.state.outstanding:
                    return
            time.sleep(0.05)

    def timed(self) -> list[tuple[float, float]]:
        """(sent, latency in seconds) of every measured probe seen so far."""
        with self.state.lock:
            return list(self.state.timed)

    def pending(self) -> list[float]:
        """Send times of the measured probes not yet seen in their view."""
        with self.state.lock:
            return [p.sent for p in self.state.outstanding.values() if p.sent >= 0]

    def stop(self) -> None:
        self.state.stop = True
        self._poller.join(5)
        self._redis.close()


def run_latency(env: BenchEnv, pipeline: Pipeline, worker: Process | WorkerGroup, workload_args: dict, rate: float,
                seconds: float, warmup_s: float, probes_per_s: float, probe_members: int, echo=print) -> dict:
    """Probe latency while the input runs at ``rate`` events/s: `ledger simulate` publishes most of it
    in its own process, the probes (at most a tenth of it) the rest."""
    progress = DeciderProgress(env.session, pipeline.keyspace, pipeline.events_topic)
    events_before = env.end_offset_total(pipeline.events_topic)
    # the probes are part of the input rate: at most a tenth of it
    probes_per_s = min(probes_per_s, rate / 10)
    background = rate - probes_per_s
    background_events = int(background * (seconds + warmup_s + 30))
    argv = [sys.executable, "-m", "app", "simulate", "--topic", pipeline.events_topic, "--rate", f"{background:.1f}",
            "--events", str(background_events)] + [
        f"--{k.replace('_', '-')}={v}" for k, v in workload_args.items()]
    sim = env.spawn(f"simulate-{pipeline.label}-latency", argv, {"LEDGER_KAFKA_BOOTSTRAP": env.settings.kafka_bootstrap})
    # start probing once the background load flows
    began = time.monotonic()
    while env.end_offset_total(pipeline.events_topic) <= events_before:
        sim.check_alive()
        if time.monotonic() - began > 60:
            raise BenchError("ledger simulate published nothing within 60 s")
        time.sleep(0.05)
    flowing = time.monotonic()

    ledger_start = env.end_offsets(pipeline.ledger_topic)
    sent_wall: dict[str, float] = {}  # event id -> wall-clock send time (ledger timestamps are wall clock)
    probes = Probes(env, pipeline, probe_members).start()
    meter = CpuMeter({**meter_pids(worker), **env.stack})
    metering = False
    interval = 1.0 / probes_per_s
    t0 = time.monotonic()
    measure_from = t0 + warmup_s
    end = measure_from + seconds
    sent = 0
    next_at = t0
    try:
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if now < next_at:
                time.sleep(min(next_at - now, 0.005))
                continue
            if not metering and now >= measure_from:
                meter.start()
                metering = True
            next_at += interval
            measured = time.monotonic() >= measure_from
            wall = time.time()
            event_id, _ = probes.send(measured)
            if measured:
                sent_wall[event_id] = wall
                sent += 1
            worker.check_alive()
        probes.flush(30)
        probes.drain(30)
    finally:
        probes.stop()
        shares = meter.stop() if metering else {}
        sim.stop(10)
        stopped = time.monotonic()
    n = probes.sent
    end_total = env.end_offset_total(pipeline.events_topic)
    background_published = end_total - events_before - n
    # did the worker keep up? the decider's backlog right after the probes
    backlog = end_total - progress.done()
    lost = len(probes.pending())
    ms = sorted(lat * 1000 for _, lat in probes.timed())
    decided = sorted(_decider_latencies(env, pipeline.ledger_topic, ledger_start, sent_wall))
    result = {
        "rate_target": rate,
        "background_rate_target": background,
        "background_rate_measured": None,
        "background_events_published": background_published,
        "seconds": seconds,
        "warmup_s": warmup_s,
        "probes": len(ms),
        "probes_sent": sent,
        "probes_unseen": lost,
        "probes_per_s": probes_per_s,
        "probe_members": probe_members,
        "poll_interval_ms": Probes.POLL_INTERVAL_MS,
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1] if ms else None,
        "decider_p50_ms": percentile(decided, 50),
        "decider_p99_ms": percentile(decided, 99),
        "decider_probes": len(decided),
        "backlog_after": backlog,
        "cpu_share": shares,
    }
    result["background_rate_measured"] = round(background_published / max(stopped - flowing, 1e-9), 1)
    return result


def _decider_latencies(env: BenchEnv, topic: str, start: dict[int, int], sent_wall: dict[str, float]) -> list[float]:
    """Milliseconds from a probe's send to its ledger entry's timestamp (set when the decider produced
    it, after the append): the decider's share of the latency; the rest is the projector's."""
    import uuid

    from confluent_kafka import Consumer, TopicPartition

    from app.adapters.avro.mapping import decode_ledger_entry

    end = env.end_offsets(topic)
    todo = {p: e for p, e in end.items() if e > start.get(p, 0)}
    consumer = Consumer({**kafka_connection(env.settings).librdkafka(), "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    out: list[float] = []
    try:
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in todo])
        deadline = time.monotonic() + 60
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(1_000, timeout=0.5):
                if msg.error():
                    continue
                if msg.offset() + 1 >= todo.get(msg.partition(), 0):
                    todo.pop(msg.partition(), None)
                key = msg.key() or b""
                if not key.startswith(b"probe-"):
                    continue
                entry = decode_ledger_entry(msg.value())
                sent = sent_wall.get(entry.recorded.event.event_id)
                if sent is not None:
                    out.append(msg.timestamp()[1] - sent * 1000)
    finally:
        consumer.close()
    return out


def _poll_probes(state: _ProbeState, views: Views, interval_s: float) -> None:
    while not state.stop:
        with state.lock:
            outstanding = list(state.outstanding.items())
        if outstanding:
            members = sorted({p.member for _, p in outstanding})
            seen = dict(zip(members, views.seqs(members)))
            now = time.monotonic()
            with state.lock:
                for event_id, probe in outstanding:
                    if seen[probe.member] >= probe.seq:
                        del state.outstanding[event_id]
                        if probe.sent >= 0:
                            state.timed.append((probe.sent, now - probe.sent))
        time.sleep(interval_s)
