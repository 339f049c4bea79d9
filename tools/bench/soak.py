"""`ledger bench --soak MINUTES`: one worker under steady input for a long time, measured every minute.

The workload is one stream of the simulator's realistic mix, bad input included. Its first
``--soak-warmup-events`` items are the warm-up: published at once before the first minute, decided
by the soak's worker at full speed. The warm-up fills the store the minutes then run on (a soak that
starts on an empty keyspace measures the store's first growth, not a steady state), and the rate of
its second half, when the store already holds the first, is the sustained rate. The input rate is
70% of that rate, or ``--soak-rate``; the report says which. The minutes' items are published at that
rate by ``tools.bench.soak_input`` in its own process, plus the end-to-end phase's probes (a tenth
of the rate at most) whose publish-to-view latency is bucketed by the minute each probe was sent in.
One ``ledger worker --role all`` serves /metrics on a port of its own.

Every minute: the worker's RSS (/proc), its CPU, the consumer lag of its group (messages, per stage,
read like ``ledger status`` does), p50/p99 of the probes sent that minute, the dead letters (the DLQ
topic's growth: expected, from the bad input) and the errors, apart from the dead letters: worker
restarts (the soak restarts a worker that exits, as a supervisor would), failed batch attempts
(``ledger_batch_failures_total`` of the worker's /metrics), publish failures (the input publisher's
and the probes') and tracebacks in the worker's log. A row is printed once the probes of its minute
have reached their views (at most 30 s after the minute); the JSON has the final figures.

At the end the input stops, the pipeline drains, and every member's view is compared with the pure
domain's decision of the same workload (as the end-to-end phase does) and every probe member's view
with the probes sent. The criteria and the verdict are in ``tools.bench.soak_report``.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from app.bootstrap import kafka_connection
from tools.bench import end_to_end, soak_report
from tools.bench.env import BenchEnv, BenchError, Pipeline, Process, cpu_times, machine, steal_share
from tools.stack.process import free_port

MIB = 2**20
SAMPLE_S = 1.0  # RSS samples, worker liveness
ROW_GRACE_S = 30.0  # a minute's row waits at most this long for its probes
# The soak's latencies are seconds: polling the probes' views every 20 ms (a latency is at most 20 ms
# late) instead of the latency phase's 2 ms keeps the measuring thread from taking a tenth of a core
# beside the worker it measures.
PROBE_POLL_MS = 20
READY_TIMEOUT_S = 180.0
INPUT_PREFIX = "soak"
# The stream's size fixes its items, and it is fixed before the warm-up measures the rate: it is sized
# for this rate, and a faster measured one is clamped to it (said in the report).
RATE_CAP = 1_000.0
WARMUP_POLL_S = 0.2
WARMUP_ECHO_S = 30.0
TRACEBACK = b"Traceback (most recent call last)"
# A stage's busy share of a minute: the seconds its batches took (ledger_batch_seconds) over 60. The
# decider's is how close the worker runs to what it sustains on the store as it is by then.
BUSY_STAGES = ("decider", "projector")
# What the stages' batches read, per minute: the share of member states found in each stage's cache,
# and the rows a decider load folds onto a member's snapshot (a member's history grows during a
# soak, and with it the cost of a cache miss).
LOAD_COUNTERS = ("decider_cache_hit", "decider_cache_miss", "projector_cache_hit", "projector_cache_miss",
                 "decider_rows_folded")


# --- the oracle ---------------------------------------------------------------------------------


def decide_workload(config, count: int) -> dict:
    """The pure domain's decision of the workload's first ``count`` items, streamed (the items are not
    kept): per member with a view, its final seq and view digest; the items by kind and the outcomes."""
    from app.domain.views import digest
    from tools.simulate.workload import generate

    states, kinds, outcomes = end_to_end.decide_items(itertools.islice(generate(config), count))
    expected = {m: (s.seq, digest(s)) for m, s in states.items() if s.seq > 0}
    return {"expected": expected, "kinds": dict(kinds), "outcomes": dict(outcomes), "members_touched": len(states)}


def check_views(views: end_to_end.Views, expected: dict[str, tuple[int, str]]) -> dict:
    """Every member's view against the oracle's digest (as the end-to-end phase checks them)."""
    from app.domain.views import digest

    members = list(expected)
    got = views.states(members)
    missing = [m for m in members if m not in got]
    differ = [m for m in members if m in got and digest(got[m]) != expected[m][1]]
    return {"members": len(members), "missing": len(missing), "differ": len(differ),
            "examples": (missing + differ)[:5], "ok": not missing and not differ}


# --- what is read from the worker ------------------------------------------------------------------


def scrape(port: int, timeout_s: float = 5.0) -> dict[str, float]:
    """Sums of the worker's counters the soak follows, from its /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as r:
        text = r.read().decode()
    wanted = {"ledger_batch_failures_total": "failed_batches", "ledger_decider_dead_letters_total": "dead_letters",
              "ledger_decider_rows_folded_total": "decider_rows_folded"}
    out = dict.fromkeys([*wanted.values(), *(f"{s}_busy_s" for s in BUSY_STAGES), *LOAD_COUNTERS], 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                out[wanted[sample.name]] += sample.value
            elif sample.name == "ledger_batch_seconds_sum" and sample.labels.get("stage") in BUSY_STAGES:
                out[f"{sample.labels['stage']}_busy_s"] += sample.value
            elif sample.name == "ledger_member_cache_lookups_total":
                key = f"{sample.labels.get('stage')}_cache_{sample.labels.get('result')}"
                if key in out:
                    out[key] += sample.value
    return out


def ready(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def minute_loads(d: dict[str, float]) -> dict:
    """A minute's cache hit shares (decider, projector) and rows per decider load, from the growth
    of LOAD_COUNTERS (None where the minute had no lookup or no load)."""
    def share(stage: str) -> float | None:
        n = d[f"{stage}_cache_hit"] + d[f"{stage}_cache_miss"]
        return round(d[f"{stage}_cache_hit"] / n, 3) if n else None

    loads = d["decider_cache_miss"]
    return {"decider_hit": share("decider"), "projector_hit": share("projector"),
            "decider_loads": int(loads), "rows_per_load": round(d["decider_rows_folded"] / loads, 2) if loads else None}


class CounterDelta:
    """Per-minute growth of a counter that restarts at 0 with its process."""

    def __init__(self) -> None:
        self.last = 0.0

    def reset(self) -> None:
        self.last = 0.0

    def delta(self, value: float) -> float:
        d = value - self.last if value >= self.last else value
        self.last = value
        return d


class LogScan:
    """Tracebacks appended to worker logs since the last look (a restarted worker has a log of its own)."""

    def __init__(self) -> None:
        self.offsets: dict[Path, int] = {}
        self.excerpts: list[str] = []

    def new_tracebacks(self, paths: list[Path]) -> int:
        found = 0
        for path in paths:
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets.get(path, 0))
                    data = f.read()
            except OSError:
                continue
            # keep a partial last line for the next look (a traceback header split by a write)
            cut = data.rfind(b"\n") + 1
            data = data[:cut]
            self.offsets[path] = self.offsets.get(path, 0) + cut
            n = data.count(TRACEBACK)
            found += n
            if n and len(self.excerpts) < 3:
                at = data.find(TRACEBACK)
                self.excerpts.append(f"{path.name}: " + data[at:at + 1500].decode(errors="replace"))
        return found


# --- the run ------------------------------------------------------------------------------------------


def run(cfg, settings, command: str, echo=print) -> tuple[dict, int]:
    started = datetime.now(UTC)
    run_id = "s" + started.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:3]
    t_start = time.monotonic()
    settings = settings.model_copy(update={"batch_size": cfg.batch_size, "batch_wait_ms": cfg.batch_wait_ms,
                                           "member_cache_size": cfg.cache_size})
    results: dict = {
        "kind": "soak",
        "run_id": run_id,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "machine": machine(),
        # the byte budget of each member cache and the snapshot interval come from the environment
        # (LEDGER_MEMBER_CACHE_MB, LEDGER_SNAPSHOT_EVERY), which the workers inherit
        "config": {**{k: v for k, v in asdict(cfg).items() if k in SOAK_CONFIG},
                   "member_cache_mb": settings.member_cache_mb, "snapshot_every": settings.snapshot_every},
        "errors": {},
        "notes": [],
    }
    work_dir = settings.stack_dir / "bench" / run_id
    plain_echo = echo

    def echo(message: str) -> None:  # stage lines ("[stage] ...") carry the run's elapsed seconds
        if message.startswith("[") and "]" in message:
            stage, _, rest = message[1:].partition("]")
            message = f"[{time.monotonic() - t_start:6.0f}s {stage}]{rest}"
        plain_echo(message)

    echo(f"soak {run_id}: {cfg.soak_minutes} minute(s); logs in {work_dir}")
    env = BenchEnv(settings, run_id, cfg.redis_db, work_dir, echo=echo)
    soak: Soak | None = None
    interrupted: BaseException | None = None
    try:
        soak = Soak(env, cfg, settings, results, echo)
        soak.run()
    except Exception as exc:  # noqa: BLE001 - reported, with the minutes measured until then
        results["errors"]["soak"] = f"{type(exc).__name__}: {exc}"
        echo(f"soak FAILED: {type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stderr)
    except BaseException as exc:  # Ctrl-C, SIGTERM: the report of the minutes so far, then exit as asked
        results["errors"]["soak"] = f"interrupted ({type(exc).__name__})"
        echo(f"soak interrupted: writing the report of the {len(soak.rows) if soak else 0} minute(s) measured")
        interrupted = exc
    finally:
        if soak is not None:
            soak.close()
        echo("[cleanup] deleting the run's topics and keyspaces, flushing its Redis database")
        env.close()
    if soak is not None and "minutes" not in results:
        results["minutes"] = soak.partial_rows()
    results["wall_seconds"] = round(time.monotonic() - t_start, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["verdict"] = soak_report.verdict(results, soak.latencies_ms() if soak is not None else {})
    json_path, md_path = soak_report.write(results, Path(cfg.out_dir))
    echo(soak_report.verdict_text(results["verdict"]))
    echo(f"[done] wrote {json_path} and {md_path} ({results['wall_seconds']:.0f} s)")
    if interrupted is not None:
        raise interrupted
    failed = bool(results["errors"]) or results["verdict"]["verdict"] == soak_report.NOT_HELD
    return results, 1 if failed else 0


SOAK_CONFIG = ("seed", "members", "partitions", "batch_size", "batch_wait_ms", "cache_size", "probe_members",
               "redis_db", "soak_minutes", "soak_rate", "soak_warmup_events", "soak_load_share",
               "soak_probes_per_s", "soak_drain_timeout_s", "out_dir")


class Soak:
    def __init__(self, env: BenchEnv, cfg, settings, results: dict, echo):
        self.env = env
        self.cfg = cfg
        self.settings = settings
        self.results = results
        self.echo = echo
        self.minutes = cfg.soak_minutes
        self.warmup_events = cfg.soak_warmup_events
        top = cfg.soak_rate if cfg.soak_rate is not None else RATE_CAP
        self.stream_events = self.warmup_events + max(1, round(top * 60 * self.minutes))
        self.rate = self.probes_per_s = self.input_rate = 0.0  # set_rate, once the warm-up has run
        self.input_events = 0
        self.warmup_dead_letters = 0
        self.pipeline: Pipeline | None = None
        self.worker: Process | None = None
        self.workers: list[Process] = []
        self.port = 0
        self.publisher: Process | None = None
        self.status_path = env.work_dir / "soak-input.json"
        self.probes: end_to_end.Probes | None = None
        self._stop_probes = threading.Event()
        self._probe_thread: threading.Thread | None = None
        self.t0 = 0.0
        self.rows: list[dict] = []
        self.logscan = LogScan()
        self.failures = CounterDelta()
        self.busy = {stage: CounterDelta() for stage in BUSY_STAGES}
        self.loads = {key: CounterDelta() for key in LOAD_COUNTERS}
        self.restarts: list[dict] = []
        self._restarts_counted = 0
        self._publish_failures_counted = 0
        self._probe_failures_counted = 0
        self._publisher_died = False
        self._publisher_death_counted = False
        self._lag = None
        self._printed = 0

    # -- set-up --

    def run(self) -> None:
        from app.bootstrap import consumer_lag

        cfg, env = self.cfg, self.env
        env.flush_redis()
        self.pipeline = env.pipeline("soak", cfg.batch_size, cfg.cache_size, cfg.partitions,
                                     {"LEDGER_BATCH_WAIT_MS": str(cfg.batch_wait_ms)})
        self.port = free_port()
        self.echo("[worker] starting one `ledger worker --role all` on the soak's pipeline")
        self.start_worker()
        self.wait_ready()
        self._lag = consumer_lag(self.settings)
        warmup = self.warm_up()
        self.set_rate(warmup)
        self.decide_oracle()
        self.measure_loop()
        self.drain_and_check()

    def workload_config(self):
        from tools.simulate.workload import WorkloadConfig

        return WorkloadConfig(seed=self.cfg.seed, members=self.cfg.members, events=self.stream_events,
                              id_prefix=INPUT_PREFIX)

    def warm_up(self) -> dict | None:
        """Publish the stream's first items in two halves, each at once, and time the pipeline through
        the second: from its publication until every stage's lag is 0, with the store holding the first
        half. That is the sustained rate end to end on members with history (the decider alone runs
        faster while the projector falls behind, as it does on one event loop at saturation)."""
        from tools.simulate.publish import publish
        from tools.simulate.workload import EVENT_KINDS, generate

        n, p = self.warmup_events, self.pipeline
        if n == 0:
            return None

        def counted(items):
            for item in items:
                if item.kind not in EVENT_KINDS:
                    self.warmup_dead_letters += 1
                yield item

        items = counted(itertools.islice(generate(self.workload_config()), n))
        connection = kafka_connection(self.settings)
        progress = end_to_end.DeciderProgress(self.env.session, p.keyspace, p.events_topic)
        halves = []
        for k, count in enumerate((n // 2, n - n // 2), start=1):
            self.echo(f"[warm-up] half {k}: publishing {count:,} items of the workload at once; the worker "
                      "decides them at full speed")
            began = time.monotonic()
            publish(itertools.islice(items, count), connection, p.events_topic)
            messages = self.env.end_offset_total(p.events_topic)
            self.wait_decided(progress, messages)
            decided = time.monotonic()
            self.wait_drained(decided + self.cfg.soak_drain_timeout_s)
            drained = time.monotonic()
            halves.append({"items": count, "messages": messages - sum(h["messages"] for h in halves),
                           "decided_s": round(decided - began, 1), "drained_s": round(drained - began, 1)})
            self.echo(f"  half {k}: decided in {decided - began:.0f} s, drained in {drained - began:.0f} s")
        measured = halves[-1]
        rate = measured["messages"] / max(measured["drained_s"], WARMUP_POLL_S)
        metrics = self.read_metrics()  # the minutes' busy shares start from here; failures and tracebacks
        self.read_busy(metrics)        # of the warm-up are counted in the first minute's errors
        self.read_loads(metrics)
        out = {"items": n, "messages": sum(h["messages"] for h in halves), "halves": halves,
               "measured_messages": measured["messages"], "rate": round(rate, 1),
               "dead_letters": self.warmup_dead_letters}
        self.echo(f"  sustained rate {rate:,.1f} events/s end to end (the second half, on a store holding the first)")
        return out

    def wait_decided(self, progress, messages: int) -> None:
        """Until the decider's durable progress reaches ``messages``; a stall of STALL_S is an error."""
        stall = end_to_end.Stall(self.worker, "warm-up: the decider")
        shown = time.monotonic()
        while (done := progress.done()) < messages:
            self.worker.check_alive()
            stall.check(done)
            if time.monotonic() - shown >= WARMUP_ECHO_S:
                shown = time.monotonic()
                self.echo(f"  decided {done:,} of {messages:,} messages")
            time.sleep(WARMUP_POLL_S)

    def wait_drained(self, deadline: float) -> None:
        """Until every stage's consumer lag is 0 (the projector and the clocks follow the decider)."""
        while (lag := self.read_lag()["lag_messages"]) != 0:
            self.worker.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"warm-up: the pipeline was not drained within {self.cfg.soak_drain_timeout_s:.0f} s "
                                 f"(lag {lag} messages)")
            time.sleep(0.5)

    def set_rate(self, warmup: dict | None) -> None:
        cfg = self.cfg
        if cfg.soak_rate is not None:
            rate = cfg.soak_rate
            text = f"explicit: --soak-rate {rate:g}"
        else:
            measured = cfg.soak_load_share * warmup["rate"]
            rate = min(measured, RATE_CAP)
            text = (f"{cfg.soak_load_share:.0%} of the sustained rate {warmup['rate']:,.0f} events/s measured end "
                    f"to end on the warm-up's second half ({warmup['measured_messages']:,} messages)"
                    + (f", clamped to {RATE_CAP:,.0f}" if rate < measured else ""))
        self.results["rate"] = {"value": rate, "source": "explicit" if cfg.soak_rate is not None else "measured",
                                "share_of_sustained": None if cfg.soak_rate is not None else cfg.soak_load_share,
                                "sustained": warmup["rate"] if warmup else None, "text": text}
        self.results["warmup"] = warmup
        self.echo(f"[rate] soak input: {rate:,.1f} events/s ({text})")
        self.rate = rate
        self.probes_per_s = min(cfg.soak_probes_per_s, rate / 10)
        self.input_rate = rate - self.probes_per_s  # the simulator's share; the probes are the rest
        self.input_events = max(1, round(self.input_rate * 60 * self.minutes))

    def decide_oracle(self) -> None:
        cfg = self.cfg
        total = self.warmup_events + self.input_events
        self.echo(f"[oracle] deciding the workload's {total:,} items (warm-up {self.warmup_events:,}, minutes "
                  f"{self.input_events:,}) over {cfg.members:,} members with the pure domain")
        oracle = decide_workload(self.workload_config(), total)
        self.expected = oracle["expected"]
        self.results["workload"] = {
            "seed": cfg.seed, "members": cfg.members, "events": self.input_events,
            "warmup_events": self.warmup_events, "stream_events": self.stream_events, "id_prefix": INPUT_PREFIX,
            "kinds": oracle["kinds"], "outcomes": oracle["outcomes"], "members_touched": oracle["members_touched"],
            "members_with_views": len(self.expected),
            "dead_letters_expected": oracle["outcomes"].get("dead_letter", 0) - self.warmup_dead_letters,
            "input_rate": round(self.input_rate, 3), "probes_per_s": round(self.probes_per_s, 3),
            "probe_members": cfg.probe_members, "probe_poll_ms": PROBE_POLL_MS}

    def start_worker(self) -> None:
        n = len(self.workers) + 1
        self.worker = self.env.start_worker(self.pipeline, "all", name=f"worker-soak-{n}", metrics_port=self.port)
        self.workers.append(self.worker)
        self.failures.reset()
        for counter in [*self.busy.values(), *self.loads.values()]:
            counter.reset()

    def wait_ready(self) -> None:
        began = time.monotonic()
        while not ready(self.port):
            self.worker.check_alive()
            if time.monotonic() - began > READY_TIMEOUT_S:
                raise BenchError(f"the worker was not ready within {READY_TIMEOUT_S:.0f} s; log {self.worker.log}:\n"
                                 f"{self.worker.tail()}")
            time.sleep(0.25)
        self.echo(f"  worker pid {self.worker.pid} ready after {time.monotonic() - began:.1f} s "
                  f"(metrics on 127.0.0.1:{self.port})")

    def start_input(self) -> None:
        p = self.pipeline
        before = self.env.end_offset_total(p.events_topic)
        self.dlq_before = self.env.end_offset_total(p.topics["dlq"])
        argv = [sys.executable, "-m", "tools.bench.soak_input", "--topic", p.events_topic,
                "--rate", f"{self.input_rate:.3f}", "--events", str(self.input_events), "--seed", str(self.cfg.seed),
                "--members", str(self.cfg.members), "--id-prefix", INPUT_PREFIX, "--status", str(self.status_path),
                "--skip", str(self.warmup_events), "--stream-events", str(self.stream_events)]
        self.publisher = self.env.spawn("soak-input", argv, {"LEDGER_KAFKA_BOOTSTRAP": self.env.settings.kafka_bootstrap})
        began = time.monotonic()
        while self.env.end_offset_total(p.events_topic) <= before:
            self.publisher.check_alive()
            if time.monotonic() - began > 120:
                raise BenchError("the soak input published nothing within 120 s")
            time.sleep(0.05)
        self.t0 = time.monotonic()
        self.events_before = before
        self.probes = end_to_end.Probes(self.env, p, self.cfg.probe_members, PROBE_POLL_MS).start()
        self._probe_thread = threading.Thread(target=self._send_probes, name="soak-probes", daemon=True)
        self._probe_thread.start()

    def _send_probes(self) -> None:
        interval = 1.0 / self.probes_per_s
        next_at = time.monotonic()
        end = self.t0 + 60 * self.minutes
        while not self._stop_probes.is_set():
            now = time.monotonic()
            if now >= end:
                break
            if now < next_at:
                self._stop_probes.wait(min(next_at - now, 0.005))
                continue
            next_at = max(next_at + interval, now - 1.0)  # a stall of the bench is not caught up in a burst
            self.probes.send(True)
        self.probes.flush(30)

    # -- every minute --

    def measure_loop(self) -> None:
        self.start_input()
        self.echo(f"[soak] input at {self.rate:,.1f} events/s for {self.minutes} minute(s): {self.input_events:,} "
                  f"simulator items at {self.input_rate:,.1f}/s + probes at {self.probes_per_s:,.1f}/s")
        self.echo(soak_report.table_header())
        p = self.pipeline
        last_events = self.events_before
        last_dlq = self.dlq_before
        last_cpu, cpu_pid = self.worker.cpu_seconds(), self.worker.pid
        last_times = cpu_times()
        for minute in range(1, self.minutes + 1):
            boundary = self.t0 + 60 * minute
            rss_max = 0
            while (now := time.monotonic()) < boundary:
                rss_max = max(rss_max, self.sample_worker())
                self.print_rows()
                time.sleep(min(SAMPLE_S, max(0.0, boundary - now)))
            row: dict = {"minute": minute, "window_s": [60 * (minute - 1), 60 * minute]}
            status = self.worker.status()
            rss = status.get("VmRSS", 0)
            row["rss_mib"] = round(rss / MIB, 1) if rss else None
            row["rss_max_mib"] = round(max(rss_max, rss) / MIB, 1) if max(rss_max, rss) else None
            row["vm_hwm_mib"] = round(status.get("VmHWM", 0) / MIB, 1) if status else None
            row["worker_pid"] = self.worker.pid
            cpu = self.worker.cpu_seconds()
            if self.worker.pid != cpu_pid:  # restarted during the minute: its CPU since it started
                last_cpu, cpu_pid = 0.0, self.worker.pid
            row["worker_cpu"] = round(max(0.0, cpu - last_cpu) / 60, 3)
            last_cpu = cpu
            row["load_average"] = round(os.getloadavg()[0], 2)
            times = cpu_times()
            row["steal"] = steal_share(last_times, times)
            last_times = times
            events = self._try(lambda: self.env.end_offset_total(p.events_topic), "reading the input offsets")
            row["input_events"] = None if events is None else events - last_events
            row["input_rate"] = None if events is None else round((events - last_events) / 60, 1)
            last_events = events if events is not None else last_events
            dlq = self._try(lambda: self.env.end_offset_total(p.topics["dlq"]), "reading the DLQ offsets")
            row["dead_letters"] = None if dlq is None else dlq - last_dlq
            last_dlq = dlq if dlq is not None else last_dlq
            row.update(self.read_lag())
            metrics = self.read_metrics()
            row["busy"] = self.read_busy(metrics)
            row["loads"] = self.read_loads(metrics)
            row["errors"] = self.read_errors(metrics)
            row["errors_total"] = sum(v for v in row["errors"].values() if v)
            row["_boundary"] = boundary
            self.rows.append(row)
            self.print_rows()

    def sample_worker(self) -> int:
        """The worker's RSS now; a worker that exited is counted and started again."""
        if not self.worker.alive:
            code = self.worker.popen.returncode
            self.restarts.append({"at_s": round(time.monotonic() - self.t0, 1), "exit_code": code,
                                  "log": str(self.worker.log), "tail": self.worker.tail(20)})
            self.echo(f"  worker pid {self.worker.pid} exited with {code}: restarting it (counted as an error)")
            self.start_worker()
            return 0
        if self.publisher is not None and not self.publisher.alive and not self._publisher_died:
            st = soak_input_status(self.status_path)
            if self.publisher.popen.returncode != 0 or not st or not st.get("done"):
                self._publisher_died = True
                self.results["notes"].append(f"the input publisher exited with {self.publisher.popen.returncode} "
                                             f"before the end; log {self.publisher.log}:\n{self.publisher.tail(10)}")
        return self.worker.status().get("VmRSS", 0)

    def read_lag(self) -> dict:
        from app.bootstrap import group_id, role_topics

        ps = self.pipeline.settings(self.settings)
        began = time.monotonic()
        try:
            lag = self._lag.group_lag(group_id(ps, "all"), role_topics(ps, "all"))
        except Exception as exc:  # noqa: BLE001 - a minute without a lag figure, said so
            self.results["notes"].append(f"minute at {time.monotonic() - self.t0:.0f} s: lag not read: {exc}")
            return {"lag_messages": None, "lag_by_stage": None, "lag_oldest_s": None, "lag_read_s": None}
        stages = {s: lag.total(s) for s in ("decider", "projector", "clocks")}
        return {"lag_messages": lag.total(), "lag_by_stage": stages, "lag_oldest_s": round(lag.oldest_seconds(), 2),
                "lag_read_s": round(time.monotonic() - began, 2)}

    def read_metrics(self) -> dict | None:
        try:
            return scrape(self.port)
        except Exception as exc:  # noqa: BLE001
            if self.worker.alive:
                self.results["notes"].append(f"minute at {time.monotonic() - self.t0:.0f} s: /metrics not read: {exc}")
            return None

    def read_busy(self, metrics: dict | None) -> dict | None:
        if metrics is None:
            return None
        return {stage: round(self.busy[stage].delta(metrics[f"{stage}_busy_s"]) / 60, 3) for stage in BUSY_STAGES}

    def read_loads(self, metrics: dict | None) -> dict | None:
        if metrics is None:
            return None
        return minute_loads({key: self.loads[key].delta(metrics[key]) for key in LOAD_COUNTERS})

    def read_errors(self, metrics: dict | None) -> dict:
        restarts = len(self.restarts) - self._restarts_counted
        self._restarts_counted = len(self.restarts)
        failed = None if metrics is None else int(self.failures.delta(metrics["failed_batches"]))
        st = soak_input_status(self.status_path) or {}
        publish = st.get("publish_failures", 0) - self._publish_failures_counted
        self._publish_failures_counted = st.get("publish_failures", 0)
        if self._publisher_died and not self._publisher_death_counted:
            self._publisher_death_counted = True
            publish += 1
        probe_failures = self.probes.delivery_failures - self._probe_failures_counted
        self._probe_failures_counted = self.probes.delivery_failures
        tracebacks = self.logscan.new_tracebacks([w.log for w in self.workers])
        return {"restarts": restarts, "failed_batches": failed, "publish_failures": publish + probe_failures,
                "tracebacks": tracebacks}

    def _try(self, fn, what: str):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            self.results["notes"].append(f"at {time.monotonic() - self.t0:.0f} s: {what} failed: {exc}")
            return None

    # -- probes by minute --

    def latencies_ms(self) -> dict[int, list[float]]:
        """Latencies (ms) of the probes seen, by the minute they were sent in (1-based)."""
        out: dict[int, list[float]] = {m: [] for m in range(1, len(self.rows) + 1)}
        if self.probes is None:
            return out
        for sent, lat in self.probes.timed():
            minute = self._minute_of(sent)
            if minute in out:
                out[minute].append(lat * 1000)
        return out

    def pending_by_minute(self) -> Counter:
        c: Counter[int] = Counter()
        if self.probes is not None:
            for sent in self.probes.pending():
                c[self._minute_of(sent)] += 1
        return c

    def _minute_of(self, sent: float) -> int:
        """The minute (1-based) a probe was sent in; one sent a few µs after the last is of the last."""
        return min(int((sent - self.t0) // 60) + 1, self.minutes)

    def print_rows(self, force: bool = False) -> None:
        """Print the rows whose probes have all been seen (or whose grace has passed), in order."""
        while self._printed < len(self.rows):
            row = self.rows[self._printed]
            pending = self.pending_by_minute().get(row["minute"], 0)
            if pending and not force and time.monotonic() < row["_boundary"] + ROW_GRACE_S:
                return
            self.fill_latency(row)
            self.echo(soak_report.table_row(row))
            self._printed += 1

    def partial_rows(self) -> list[dict]:
        """The minutes measured, for the report of a run that stopped before its end."""
        for row in self.rows:
            self.fill_latency(row)
            row.pop("_boundary", None)
        return self.rows

    def fill_latency(self, row: dict) -> None:
        from tools.bench.env import percentile

        ms = sorted(self.latencies_ms().get(row["minute"], []))
        row["probes"] = len(ms)
        row["probes_pending"] = self.pending_by_minute().get(row["minute"], 0)
        row["p50_ms"] = _r(percentile(ms, 50))
        row["p99_ms"] = _r(percentile(ms, 99))
        row["max_ms"] = _r(ms[-1] if ms else None)

    # -- the end --

    def drain_and_check(self) -> None:
        self._stop_probes.set()
        if self._probe_thread is not None:
            self._probe_thread.join(60)
        # the input: every item acknowledged (it ends about when the last minute does)
        wait = max(120.0, 6.0 * self.minutes)
        deadline = time.monotonic() + wait
        while self.publisher.alive and time.monotonic() < deadline:
            self.print_rows()
            time.sleep(0.5)
        if self.publisher.alive:
            self.results["notes"].append(f"the input publisher had not finished {wait:.0f} s after the last minute "
                                         "(it could not hold the rate): stopped; its remaining items were never "
                                         "published, so the views cannot match the oracle")
            self.publisher.stop(10)
        st = soak_input_status(self.status_path) or {}
        self.echo(f"[drain] input done: {st.get('acknowledged', 0):,} items acknowledged in "
                  f"{st.get('elapsed_s', 0):.0f} s; waiting for every view")
        began = time.monotonic()
        drained, why = self.wait_views(began + self.cfg.soak_drain_timeout_s)
        drain_s = time.monotonic() - began
        self.print_rows(force=True)
        for row in self.rows:  # final figures: probes that reached their views after the row was printed
            self.fill_latency(row)
            row.pop("_boundary", None)
        # errors after the last minute (the drain) count too
        after = self.read_errors(self.read_metrics())
        with self.env.redis() as client:
            views = end_to_end.Views(client)
            check = check_views(views, self.expected)
            probe_seqs = dict(zip(self.probes.members, views.seqs(self.probes.members)))
        probe_wrong = {m: (probe_seqs[m], n) for m, n in self.probes.seqs.items() if probe_seqs[m] != n}
        views_ok = check["ok"] and not probe_wrong and drained
        dlq_total = self._try(lambda: self.env.end_offset_total(self.pipeline.topics["dlq"]), "reading the DLQ") or 0
        dlq_total -= self.dlq_before
        published = self.env.end_offset_total(self.pipeline.events_topic) - self.events_before
        self.results.update({
            "minutes": self.rows,
            "drain": {"seconds": round(drain_s, 1), "complete": drained, "why": why, "errors": after,
                      "errors_total": sum(v for v in after.values() if v)},
            "views_check": {**check, "probe_members": len(self.probes.members), "probes_sent": self.probes.sent,
                            "probe_views_wrong": len(probe_wrong), "probe_examples": list(probe_wrong.items())[:5],
                            "drained": drained, "ok": views_ok},
            "input": {"rate_target": self.rate, "simulator_items": self.input_events,
                      "simulator_acknowledged": st.get("acknowledged"), "simulator_publish_s": st.get("elapsed_s"),
                      "publish_failures": st.get("publish_failures", 0), "publish_errors": st.get("errors", []),
                      "probes_sent": self.probes.sent, "probe_delivery_failures": self.probes.delivery_failures,
                      "messages_published": published,
                      "rate_measured": round(published / (60 * self.minutes), 1)},
            "dead_letters": {"total": dlq_total,
                             "expected": self.results["workload"]["dead_letters_expected"]},
            "restarts": self.restarts,
            "traceback_excerpts": self.logscan.excerpts,
        })
        if dlq_total != self.results["workload"]["dead_letters_expected"]:
            self.results["notes"].append(
                f"dead letters: {dlq_total} on the DLQ topic, {self.results['workload']['dead_letters_expected']} "
                "expected from the workload's malformed and undecodable items")
        self.echo(f"[views] {check['members']:,} member views vs the pure domain: missing {check['missing']}, "
                  f"differ {check['differ']}; {len(self.probes.members)} probe members, {len(probe_wrong)} wrong; "
                  f"drained in {drain_s:.0f} s{'' if drained else ' (NOT drained: ' + why + ')'}")

    def wait_views(self, deadline: float) -> tuple[bool, str]:
        expected_seq = {m: s for m, (s, _) in self.expected.items()}
        for m, n in self.probes.seqs.items():
            expected_seq[m] = n
        members = list(expected_seq)
        with self.env.redis() as client:
            views = end_to_end.Views(client)
            pending = views.incomplete(expected_seq, members)
            last, since = len(pending), time.monotonic()
            while pending:
                if not self.worker.alive:
                    self.sample_worker()
                self.print_rows()
                now = time.monotonic()
                if now > deadline:
                    return False, f"{len(pending):,} views short of their seq after {self.cfg.soak_drain_timeout_s:.0f} s"
                if len(pending) != last:
                    last, since = len(pending), now
                elif now - since > end_to_end.STALL_S:
                    return False, f"{len(pending):,} views short of their seq, no progress for {end_to_end.STALL_S:.0f} s"
                time.sleep(0.1 if len(pending) < 2_000 else 1.0)
                pending = views.incomplete(expected_seq, pending)
        return True, ""

    def close(self) -> None:
        self._stop_probes.set()
        if self._probe_thread is not None:
            self._probe_thread.join(35)
        if self.probes is not None:
            self.probes.stop()
        if self.publisher is not None:
            self.publisher.stop(10)
        for w in self.workers:
            w.stop(30)
        if self._lag is not None:
            self._lag.close()


def soak_input_status(path: Path) -> dict | None:
    from tools.bench.soak_input import read_status

    return read_status(path)


def _r(x):
    return None if x is None else round(x, 2)
