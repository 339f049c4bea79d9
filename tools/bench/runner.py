"""Chains the bench phases in one session against the local stack and writes the report.

Order (each phase isolated by `BenchEnv`): ceilings of Cassandra and Redis; the naive baseline on
its own pipeline; the end-to-end run (publish, Kafka consume ceiling on its events topic,
throughput, latency at half the throughput); the replay of that run's ledger; the what-if over that
run's event store; the read API over that run's views; the end-to-end run and its latency again with
two workers that share the partitions (split); the cost of TLS (tls); the memory run with
ten times the members. A failing phase is reported and the others still run when they do not
depend on it.
"""
from __future__ import annotations

import gc
import sys
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.bootstrap import kafka_connection
from app.config import REPO_ROOT

PHASES = ("ceilings", "naive", "e2e", "latency", "replay", "whatif", "api", "split", "tls", "memory")


# The split phase's worker processes by default: two workers that each decide and project their share
# of the partitions (1.01-1.71x one worker on the 2-core machine; a decider and a projector in a process
# each, `--split-roles decider,projector`, 0.98-1.31x: BENCHMARKS.md).
SPLIT_ROLES = ("all", "all")


@dataclass
class BenchConfig:
    quick: bool = False
    seed: int = 1
    events: int = 100_000
    members: int = 100_000
    partitions: int = 12
    batch_size: int = 500
    batch_wait_ms: int = 50
    cache_size: int = 50_000
    cassandra_plain_rows: int = 50_000
    cassandra_lwt_rows: int = 20_000
    cassandra_concurrency: int = 256
    redis_writes: int = 100_000
    redis_pipeline: int = 1_000
    naive_events: int = 20_000
    naive_seconds: float = 45.0
    latency_seconds: float = 40.0
    latency_warmup_s: float = 5.0
    latency_members: int = 100_000
    probes_per_s: float = 50.0
    probe_members: int = 32
    replay_concurrency: int = 8
    replay_verify: bool = False
    whatif_concurrency: int = 32
    api_wrk_seconds: int = 15
    api_rate: float = 1_000.0
    api_seconds: float = 30.0
    api_connections: int = 32
    memory_members: int = 1_000_000
    redis_db: int = 9
    e2e_timeout_s: float = 1_200.0
    split_roles: tuple[str, ...] = SPLIT_ROLES
    profile: bool = False
    skip: list[str] = field(default_factory=list)
    out_dir: str = str(REPO_ROOT / "bench" / "results")
    update_docs: bool = True
    # --soak (tools/bench/soak.py): minutes of steady input, instead of the phases above
    soak_minutes: int | None = None
    soak_rate: float | None = None  # None: soak_load_share of the rate its warm-up measures
    soak_load_share: float = 0.7
    soak_warmup_events: int = 200_000
    soak_probes_per_s: float = 20.0
    soak_drain_timeout_s: float = 600.0

    @classmethod
    def quick_sizes(cls, **overrides) -> BenchConfig:
        """Small sizes: the whole bench in about a minute (a smoke test, not figures to quote)."""
        base = dict(quick=True, events=3_000, members=1_000, cache_size=500, cassandra_plain_rows=3_000,
                    cassandra_lwt_rows=1_000, cassandra_concurrency=64, redis_writes=20_000, naive_events=500,
                    naive_seconds=3.0, latency_seconds=4.0, latency_warmup_s=1.5, latency_members=1_000,
                    probes_per_s=25.0, probe_members=8, api_wrk_seconds=2, api_rate=300.0, api_seconds=3.0,
                    api_connections=8, memory_members=10_000, e2e_timeout_s=300.0, update_docs=False)
        base.update(overrides)
        return cls(**base)


def run(cfg: BenchConfig, settings, command: str, echo=print) -> tuple[dict, int]:
    from tools.bench import ceilings, end_to_end, memory, naive_baseline, replay_bench, report, whatif_bench
    from tools.bench.env import BenchEnv, machine
    from tools.simulate.workload import WorkloadConfig

    started = datetime.now(UTC)
    run_id = "r" + started.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:3]
    t0 = time.monotonic()
    settings = settings.model_copy(update={"batch_size": cfg.batch_size, "batch_wait_ms": cfg.batch_wait_ms,
                                           "member_cache_size": cfg.cache_size})
    results: dict = {
        "run_id": run_id,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "machine": machine(),
        "config": asdict(cfg),
        "errors": {},
        "notes": [],
    }
    work_dir = settings.stack_dir / "bench" / run_id
    echo(f"bench {run_id}: {'quick' if cfg.quick else 'full'} run; logs in {work_dir}")
    env = BenchEnv(settings, run_id, cfg.redis_db, work_dir, echo=echo)
    results["stack_pids"] = env.stack
    want = [p for p in PHASES if p not in cfg.skip]

    def phase(name: str, fn):
        if name not in want:
            return None
        echo(f"[{time.monotonic() - t0:6.0f}s] {name}")
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - reported, the other phases go on
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            echo(f"  {name} FAILED: {exc}")
            traceback.print_exc(file=sys.stderr)
            return None

    def workload_config(events: int, members: int, prefix: str = "") -> WorkloadConfig:
        return WorkloadConfig(seed=cfg.seed, members=members, events=events, id_prefix=prefix)

    worker = None
    main_pipeline = None
    workload = None
    try:
        # --- ceilings (Cassandra, Redis) ---
        def do_ceilings():
            ks = env.keyspace("ceiling")
            payload = bytes(180)  # about an encoded LicenseAcquired
            cluster, session = ceilings.ceiling_session(settings)
            try:
                out = {"cassandra_plain": ceilings.cassandra_writes(session, ks, cfg.cassandra_plain_rows,
                                                                    cfg.cassandra_concurrency, False, env.stack, payload)}
                echo(f"  Cassandra plain writes: {out['cassandra_plain']['rate']:,.0f}/s")
                out["cassandra_lwt"] = ceilings.cassandra_writes(session, ks, cfg.cassandra_lwt_rows,
                                                                 cfg.cassandra_concurrency, True, env.stack, payload)
            finally:
                cluster.shutdown()
            echo(f"  Cassandra conditional writes (LWT): {out['cassandra_lwt']['rate']:,.0f}/s")
            env.flush_redis()
            out["redis"] = ceilings.redis_pipelined(env.settings, env.redis_url, cfg.redis_writes, cfg.redis_pipeline, 400, env.stack)
            echo(f"  Redis pipelined HSET {out['redis']['hset']['rate']:,.0f}/s, "
                 f"fenced script {out['redis']['fenced_script']['rate']:,.0f}/s")
            return out

        results["ceilings"] = phase("ceilings", do_ceilings) or {}

        # --- naive baseline ---
        def do_naive():
            env.flush_redis()
            p = env.pipeline("naive", 1, cfg.cache_size, cfg.partitions)
            w = end_to_end.prepare_workload(workload_config(cfg.naive_events, cfg.members))
            end_to_end.publish_workload(w, kafka_connection(settings), p.events_topic, echo)
            return naive_baseline.run(env, p, w, seconds=cfg.naive_seconds, echo=echo)

        results["naive"] = phase("naive", do_naive)

        # --- end to end ---
        def do_e2e():
            nonlocal worker, main_pipeline, workload
            env.flush_redis()
            main_pipeline = env.pipeline("main", cfg.batch_size, cfg.cache_size, cfg.partitions,
                                         {"LEDGER_BATCH_WAIT_MS": str(cfg.batch_wait_ms)})
            echo(f"  generating {cfg.events:,} events over {cfg.members:,} members and deciding them with the "
                 "domain (the oracle)")
            workload = end_to_end.prepare_workload(workload_config(cfg.events, cfg.members))
            results["workload"] = {"kinds": workload.kinds, "outcomes": workload.outcomes,
                                   "members_touched": workload.members_touched,
                                   "members_with_views": len(workload.expected)}
            results["publish"] = end_to_end.publish_workload(workload, kafka_connection(settings),
                                                             main_pipeline.events_topic, echo)
            k = ceilings.kafka_consume(kafka_connection(settings), main_pipeline.events_topic, workload.size,
                                       cfg.partitions, env.stack)
            results["ceilings"]["kafka_consume"] = k
            echo(f"  Kafka consume ceiling: {k['rate']:,.0f} messages/s")
            gc.collect()
            profile_to = work_dir / "profile-e2e.txt" if cfg.profile else None
            out, worker = end_to_end.run_throughput(env, main_pipeline, workload, timeout_s=cfg.e2e_timeout_s,
                                                    profile_to=profile_to, echo=echo)
            return out

        results["e2e"] = {"throughput": phase("e2e", do_e2e)}
        e2e = results["e2e"]["throughput"]

        if e2e and worker is not None and worker.alive:
            def do_latency():
                rate = max(1.0, e2e["rate"] / 2)
                args = {"members": cfg.latency_members, "seed": cfg.seed + 1, "id_prefix": "lat"}
                return end_to_end.run_latency(env, main_pipeline, worker, args, rate, cfg.latency_seconds,
                                              cfg.latency_warmup_s, cfg.probes_per_s, cfg.probe_members, echo)

            lat = phase("latency", do_latency)
            results["e2e"]["latency"] = lat
            if lat:
                echo(f"  publish-to-view latency at {lat['rate_target']:,.0f} events/s: p50 {_ms(lat['p50_ms'])}, "
                     f"p99 {_ms(lat['p99_ms'])} ({lat['probes']} probes, backlog after {lat['backlog_after']}); "
                     f"publish to ledger entry (the decider's part): p50 {_ms(lat['decider_p50_ms'])}, "
                     f"p99 {_ms(lat['decider_p99_ms'])}")
        if worker is not None:
            worker.stop(30)
            worker = None

        if e2e and main_pipeline is not None:
            results["replay"] = phase("replay", lambda: replay_bench.run(
                env, main_pipeline, workload.expected, concurrency=cfg.replay_concurrency,
                verify=cfg.replay_verify, echo=echo))
            results["whatif"] = phase("whatif", lambda: whatif_bench.run(
                env, main_pipeline, concurrency=cfg.whatif_concurrency, echo=echo))

            def do_api():
                from tools.bench import api_bench
                return api_bench.run(env, main_pipeline, workload.expected, wrk_seconds=cfg.api_wrk_seconds,
                                     fixed_rate=cfg.api_rate, fixed_seconds=cfg.api_seconds,
                                     connections=cfg.api_connections, echo=echo)

            results["api"] = phase("api", do_api)

            def do_split():
                """The end-to-end run and its latency again with two worker processes (``split_roles``):
                what a second process buys on this machine."""
                env.flush_redis()  # the same members and seqs as the main pipeline's views
                p = env.pipeline("split", cfg.batch_size, cfg.cache_size, cfg.partitions,
                                 {"LEDGER_BATCH_WAIT_MS": str(cfg.batch_wait_ms)})
                end_to_end.publish_workload(workload, kafka_connection(settings), p.events_topic, echo)
                out, workers = end_to_end.run_throughput(env, p, workload, timeout_s=cfg.e2e_timeout_s,
                                                         roles=cfg.split_roles, echo=echo)
                try:
                    rate = max(1.0, out["rate"] / 2)
                    args = {"members": cfg.latency_members, "seed": cfg.seed + 1, "id_prefix": "lat"}
                    out["latency"] = end_to_end.run_latency(env, p, workers, args, rate, cfg.latency_seconds,
                                                            cfg.latency_warmup_s, cfg.probes_per_s,
                                                            cfg.probe_members, echo)
                finally:
                    workers.stop(30)
                lat = out["latency"]
                echo(f"  two processes: {out['rate']:,.0f} events/s end to end ({out['rate'] / e2e['rate']:.2f}x one "
                     f"worker); latency at {lat['rate_target']:,.0f} events/s: p50 {_ms(lat['p50_ms'])}, "
                     f"p99 {_ms(lat['p99_ms'])}")
                return out

            results["split"] = phase("split", do_split)

            def do_tls():
                from tools.bench import tls_cost
                why_not = tls_cost.unavailable(settings)
                if why_not:
                    results["notes"].append(f"tls phase skipped: {why_not}")
                    echo(f"  skipped: {why_not}")
                    return None
                return tls_cost.run(settings, e2e["rate"], workload, cfg, run_id, work_dir, echo=echo)

            results["tls"] = phase("tls", do_tls)

        if e2e and "memory" in want:
            small = memory.point("small", cfg.members, e2e["events"], cfg.cache_size, cfg.batch_size,
                                 cfg.partitions, e2e)
            workload = None
            gc.collect()

            def do_memory():
                env.flush_redis()
                p = env.pipeline("mem", cfg.batch_size, cfg.cache_size, cfg.partitions,
                                 {"LEDGER_BATCH_WAIT_MS": str(cfg.batch_wait_ms)})
                echo(f"  generating {cfg.events:,} events over {cfg.memory_members:,} members")
                w = end_to_end.prepare_workload(workload_config(cfg.events, cfg.memory_members))
                end_to_end.publish_workload(w, kafka_connection(settings), p.events_topic, echo)
                out, wk = end_to_end.run_throughput(env, p, w, timeout_s=cfg.e2e_timeout_s, echo=echo)
                wk.stop(30)
                large = memory.point("large", cfg.memory_members, out["events"], cfg.cache_size, cfg.batch_size,
                                     cfg.partitions, out)
                echo(f"  worker peak RSS: {small['vm_hwm_mib']} MiB with {cfg.members:,} members, "
                     f"{large['vm_hwm_mib']} MiB with {cfg.memory_members:,}")
                return {"small": small, "large": large, "verdict": memory.verdict(small, large),
                        "large_run": {k: v for k, v in out.items() if k != "profile"}}

            results["memory"] = phase("memory", do_memory)
    finally:
        if worker is not None:
            worker.stop(30)
        env.close()

    results["wall_seconds"] = time.monotonic() - t0
    results["stack_note"] = "Kafka 4.1.1 KRaft 512 MiB heap, Cassandra 5.0.6 1 GiB heap, Redis"
    built = report.build(results)
    results.update(built)
    out_dir = Path(cfg.out_dir)
    json_path, md_path = report.write(results, out_dir)
    echo(f"bench: wrote {json_path} and {md_path} ({results['wall_seconds']:.0f} s)")
    for t in results["targets"]:
        ratio = "n/a" if t["ratio"] is None else f"{t['ratio']:.2f}"
        echo(f"  target {'MET    ' if t['met'] else 'NOT MET'} {t['target']}: {t['measured']} (ratio {ratio})")
    if cfg.update_docs and not cfg.quick and not results["errors"]:
        if report.update_benchmarks_md(REPO_ROOT / "BENCHMARKS.md", report.markdown(results)):
            echo("bench: BENCHMARKS.md updated with this run's table")
    if results["errors"]:
        echo(f"bench: {len(results['errors'])} phase(s) failed: {', '.join(results['errors'])}")
    return results, 1 if results["errors"] else 0


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"

