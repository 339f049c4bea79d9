"""What isolates a bench run from everything else on the stack, and the process measurements it uses.

A run has an id; everything it creates carries it: topics ``bench.<run>.<label>.*`` (12 partitions,
deleted at the end), keyspaces ``bench_<run>_<label>`` (migrated with the project's CQL, dropped at
the end), consumer groups ``bench-<run>-<label>``, and one Redis database index of its own (only that
database is ever flushed). Workers run as real ``ledger worker`` processes with ``LEDGER_*``
overrides, exactly as in production.
"""
from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.bootstrap import kafka_connection
from app.config import REPO_ROOT, Settings

PARTITIONS = 12
TOPIC_KINDS = ("events", "ledger", "rejections", "dlq")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- processes -----------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / VmSize of a live process, in bytes (empty when it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "VmSize"):
                    out[key] = int(rest.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def proc_cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of a process (and of its waited-for children when asked)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, ()))
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, ())
    return found


def stack_pids(settings: Settings) -> dict[str, int]:
    """Pids of the local stack's servers, from the pid files `ledger stack up` writes."""
    pids = {}
    for name in ("kafka", "cassandra", "redis"):
        try:
            pid = int((settings.stack_dir / "run" / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            pids[name] = pid
    return pids


class CpuMeter:
    """CPU seconds used by named processes over an interval: ``with CpuMeter(pids) as m: ...; m.shares``
    gives each process's CPU time divided by the wall time (1.0 = one core busy all along)."""

    def __init__(self, pids: dict[str, int]):
        self.pids = dict(pids)
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self.seconds: dict[str, float] = {}
        self.wall = 0.0

    def start(self) -> CpuMeter:
        self._wall = time.monotonic()
        self._start = {n: self._cpu(p) for n, p in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.wall = time.monotonic() - self._wall
        self.seconds = {n: self._cpu(p) - self._start[n] for n, p in self.pids.items()}
        return self.shares

    @staticmethod
    def _cpu(pid: int) -> float:
        """The process's CPU seconds and its live descendants' (`ledger api --workers N` serves from
        child processes)."""
        if pid == os.getpid():
            return _self_cpu()
        return sum(proc_cpu_seconds(p) for p in [pid, *descendants(pid)])

    @property
    def shares(self) -> dict[str, float]:
        return {n: round(s / self.wall, 3) if self.wall > 0 else 0.0 for n, s in self.seconds.items()}

    def __enter__(self) -> CpuMeter:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Process:
    """A child process (worker, API server, helper) with its log file."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if not self.alive:
            raise BenchError(f"{self.name} (pid {self.pid}) exited with {self.popen.returncode}; "
                             f"last lines of {self.log}:\n{self.tail()}")


def process_names(roles: tuple[str, ...]) -> list[str]:
    """A name per worker process of ``roles``: the role, numbered when it repeats (``all1``, ``all2``)."""
    return [r if roles.count(r) == 1 else f"{r}{roles[:i + 1].count(r)}" for i, r in enumerate(roles)]


@dataclass
class WorkerGroup:
    """The worker processes of one pipeline, one per role (`--role decider` and `--role projector`, or
    two `--role all`), watched as one worker: alive while all are, memory summed, CPU metered per
    process."""

    roles: tuple[str, ...]
    processes: list[Process]

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.processes)

    @property
    def log(self) -> str:
        return ", ".join(str(p.log) for p in self.processes)

    @property
    def alive(self) -> bool:
        return all(p.alive for p in self.processes)

    def meter_pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in zip(process_names(self.roles), self.processes)}

    def status(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for p in self.processes:
            for key, value in p.status().items():
                total[key] = total.get(key, 0) + value
        return total

    def stop(self, timeout: float = 30.0) -> None:
        for p in self.processes:
            p.stop(timeout)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(lines)}" for p in self.processes)

    def check_alive(self) -> None:
        for p in self.processes:
            p.check_alive()


class BenchError(RuntimeError):
    """A bench phase cannot go on (a worker died, a deadline passed, the stack is not there)."""


# --- one isolated pipeline ---------------------------------------------------------------


@dataclass
class Pipeline:
    """Topics, keyspace, consumer group and Redis database of one pipeline of a run."""

    label: str
    topics: dict[str, str]
    keyspace: str
    group: str
    redis_url: str
    batch_size: int
    cache_size: int
    partitions: int = PARTITIONS
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def events_topic(self) -> str:
        return self.topics["events"]

    @property
    def ledger_topic(self) -> str:
        return self.topics["ledger"]

    def env(self) -> dict[str, str]:
        return {
            "LEDGER_EVENTS_TOPIC": self.topics["events"],
            "LEDGER_LEDGER_TOPIC": self.topics["ledger"],
            "LEDGER_REJECTIONS_TOPIC": self.topics["rejections"],
            "LEDGER_DLQ_TOPIC": self.topics["dlq"],
            "LEDGER_CONSUMER_GROUP": self.group,
            "LEDGER_CASSANDRA_KEYSPACE": self.keyspace,
            "LEDGER_REDIS_URL": self.redis_url,
            "LEDGER_BATCH_SIZE": str(self.batch_size),
            "LEDGER_MEMBER_CACHE_SIZE": str(self.cache_size),
            "LEDGER_METRICS_PORT": "0",
            **self.extra_env,
        }

    def settings(self, base: Settings) -> Settings:
        return base.model_copy(update={
            "events_topic": self.topics["events"], "ledger_topic": self.topics["ledger"],
            "rejections_topic": self.topics["rejections"], "dlq_topic": self.topics["dlq"],
            "consumer_group": self.group, "cassandra_keyspace": self.keyspace, "redis_url": self.redis_url,
            "batch_size": self.batch_size, "member_cache_size": self.cache_size, "metrics_port": 0,
        })

    def faust_group(self, role: str = "all") -> str:
        """The Kafka consumer group of a ``ledger worker --role ROLE`` of this pipeline (the Faust app id)."""
        return f"{self.group}-{role}"


class BenchEnv:
    """Creates (and at the end deletes) everything a run uses on the shared stack."""

    def __init__(self, settings: Settings, run_id: str, redis_db: int, work_dir: Path, echo=print):
        from confluent_kafka.admin import AdminClient

        from app.adapters.cassandra import session as cassandra_session

        self.settings = settings
        self.run_id = run_id
        self.redis_db = redis_db
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self.admin = AdminClient(kafka_connection(settings).librdkafka())
        self.cluster, self.session = cassandra_session.connect(settings)
        self.redis_url = settings.redis_url_for(redis_db)
        self._topics: list[str] = []
        self._keyspaces: list[str] = []
        self._processes: list[Process] = []
        self._offsets_consumer = None
        self._group_readers: dict[str, object] = {}
        self.stack = stack_pids(settings)

    # --- resources ------------------------------------------------------------------------

    def pipeline(self, label: str, batch_size: int, cache_size: int, partitions: int = PARTITIONS,
                 extra_env: dict[str, str] | None = None) -> Pipeline:
        topics = {k: f"bench.{self.run_id}.{label}.{k}" for k in TOPIC_KINDS}
        self.create_topics(list(topics.values()), partitions)
        keyspace = self.keyspace(label)
        return Pipeline(label, topics, keyspace, f"bench-{self.run_id}-{label}", self.redis_url,
                        batch_size, cache_size, partitions, dict(extra_env or {}))

    def create_topics(self, names: list[str], partitions: int = PARTITIONS) -> None:
        from confluent_kafka.admin import NewTopic

        futures = self.admin.create_topics([NewTopic(t, partitions, 1) for t in names])
        for name, f in futures.items():
            f.result(60)
            self._topics.append(name)
        # wait until every partition has a leader (a produce right after creation may fail otherwise)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = self.admin.list_topics(timeout=10)
            if all(n in md.topics and len(md.topics[n].partitions) == partitions
                   and all(p.leader >= 0 for p in md.topics[n].partitions.values()) for n in names):
                return
            time.sleep(0.2)

    def keyspace(self, label: str) -> str:
        from app.adapters.cassandra.migrations import migrate

        name = f"bench_{self.run_id}_{label}".lower()
        migrate(self.session, REPO_ROOT / "deploy" / "cql", self.settings.environment, name, echo=lambda *_: None)
        self._keyspaces.append(name)
        return name

    def end_offsets(self, topic: str) -> dict[int, int]:
        """High watermark of every partition of a topic."""
        from confluent_kafka import Consumer, TopicPartition

        if self._offsets_consumer is None:
            self._offsets_consumer = Consumer({**kafka_connection(self.settings).librdkafka(),
                                               "group.id": f"bench-{self.run_id}-offsets"})
        md = self._offsets_consumer.list_topics(topic, timeout=10)
        return {p: self._offsets_consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in md.topics[topic].partitions}

    def committed_offsets(self, group: str, topic: str) -> dict[int, int]:
        """Offsets committed by a consumer group (read without joining it)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = self._group_readers.get(group)
        if consumer is None:
            consumer = self._group_readers[group] = Consumer({
                **kafka_connection(self.settings).librdkafka(), "group.id": group, "enable.auto.commit": False})
        partitions = self.end_offsets(topic)
        got = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in got}

    def group_settled(self, group: str, members: int, topic: str) -> bool:
        """Whether a consumer group is stable with ``members`` members, each assigned partitions of ``topic``."""
        described = self.admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
        state = getattr(described.state, "name", str(described.state))
        assigned = [m for m in described.members if m.assignment and
                    any(tp.topic == topic for tp in m.assignment.topic_partitions)]
        return state == "STABLE" and len(described.members) == members and len(assigned) == members

    def end_offset_total(self, topic: str) -> int:
        return sum(self.end_offsets(topic).values())

    def redis(self):
        from app.bootstrap import redis_sync_client

        return redis_sync_client(self.settings, self.redis_url)

    def flush_redis(self) -> None:
        """FLUSHDB of this run's database only."""
        client = self.redis()
        try:
            client.flushdb()
        finally:
            client.close()

    # --- processes ------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        log = self.work_dir / f"{name}.log"
        popen = subprocess.Popen(argv, cwd=REPO_ROOT, env={**os.environ, **(env or {})},
                                 stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        process = Process(name, popen, log)
        self._processes.append(process)
        return process

    def start_worker(self, pipeline: Pipeline, role: str = "all", name: str | None = None,
                     metrics_port: int = 0) -> Process:
        """A `ledger worker` that counts its Cassandra statements by kind (`statement_counts`);
        ``metrics_port`` 0: no /metrics (and no lag exporter)."""
        name = name or f"worker-{pipeline.label}"
        counts = self.statement_counts_file(name)
        counts.unlink(missing_ok=True)
        # dynamic membership: two processes of one role must not share a static group.instance.id
        return self.spawn(name, [sys.executable, "-m", "app", "worker", "--role", role, "--metrics-port", str(metrics_port)],
                          {**pipeline.env(), "LEDGER_COUNT_STATEMENTS_TO": str(counts),
                           "LEDGER_CONSUMER_GROUP_INSTANCE_ID": ""})

    def start_workers(self, pipeline: Pipeline, roles: tuple[str, ...]) -> Process | WorkerGroup:
        """One `ledger worker --role all` for ``("all",)``, else a process per role."""
        if roles == ("all",):
            return self.start_worker(pipeline)
        return WorkerGroup(roles, [self.start_worker(pipeline, role=r, name=f"worker-{pipeline.label}-{n}")
                                   for r, n in zip(roles, process_names(roles))])

    def statement_counts_file(self, process_name: str) -> Path:
        return self.work_dir / f"statements-{process_name}.json"

    def statement_counts(self, process: Process | WorkerGroup, after: float | None = None,
                         timeout: float = 5.0) -> dict | None:
        """The Cassandra statements a worker sent so far, by kind, as its counting session last wrote
        them (every 0.5 s); with ``after`` (a time.time()), a file written after it. A group's are
        summed (None unless every process wrote its count)."""
        import json

        if isinstance(process, WorkerGroup):
            counts = [self.statement_counts(p, after, timeout) for p in process.processes]
            if any(c is None for c in counts):
                return None
            by_kind: dict[str, int] = {}
            for c in counts:
                for kind, n in c["by_kind"].items():
                    by_kind[kind] = by_kind.get(kind, 0) + n
            return {"statements": sum(c["statements"] for c in counts), "by_kind": by_kind}
        path = self.statement_counts_file(process.name)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if after is None or path.stat().st_mtime > after:
                    return json.loads(path.read_text())
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    # --- cleanup --------------------------------------------------------------------------

    def close(self) -> None:
        for p in self._processes:
            try:
                p.stop(15)
            except Exception as exc:  # noqa: BLE001 - cleanup goes on
                self.echo(f"bench: stopping {p.name}: {exc}")
        if self._offsets_consumer is not None:
            self._offsets_consumer.close()
        for consumer in self._group_readers.values():
            consumer.close()
        if self._topics:
            try:
                for f in self.admin.delete_topics(self._topics).values():
                    f.exception(60)
            except Exception as exc:  # noqa: BLE001
                self.echo(f"bench: deleting topics: {exc}")
        for ks in self._keyspaces:
            try:
                self.session.execute(f"DROP KEYSPACE IF EXISTS {ks}", timeout=180)
            except Exception as exc:  # noqa: BLE001
                self.echo(f"bench: dropping keyspace {ks}: {exc}")
        try:
            self.flush_redis()
        except Exception as exc:  # noqa: BLE001
            self.echo(f"bench: flushing redis db {self.redis_db}: {exc}")
        self.cluster.shutdown()


# --- machine ----------------------------------------------------------------------------


def cpu_times() -> tuple[int, int] | None:
    """(all, stolen) CPU time of the machine since boot, in ticks (/proc/stat): on a virtual machine
    the hypervisor's steal is time this machine's cores were runnable and got no CPU."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    return sum(fields), fields[7]


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time the hypervisor took between two cpu_times()."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return round((after[1] - before[1]) / (after[0] - before[0]), 3)


def machine() -> dict:
    """Cores, memory and CPU model of this machine, read now."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_bytes": mem,
        "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]
