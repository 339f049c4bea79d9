"""The read API in several server configurations, each measured by `api_bench.run` on the same views.

``python -m tools.bench.api_variants [--members N] [--out FILE]`` writes views of a simulator
workload (decided by the pure domain, written straight to Redis: no worker) to a Redis database of
its own, then, for each configuration, the maximum (wrk, 32 connections: req/s, the server's cores,
req/s per core) and the latency at a fixed 1,000 req/s (p50, p99). The configurations: asyncio +
h11 (uvicorn's fallback without uvicorn[standard]), uvloop + httptools, and that with 2 worker
processes. Everything it creates is deleted at the end.
"""
from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VARIANTS = {
    "asyncio+h11": ("--workers", "1", "--loop", "asyncio", "--http", "h11"),
    "uvloop+httptools": ("--workers", "1", "--loop", "uvloop", "--http", "httptools"),
    "uvloop+httptools, 2 workers": ("--workers", "2", "--loop", "uvloop", "--http", "httptools"),
}


def write_views(settings, redis_url: str, expected: dict) -> None:
    from app.adapters.redis.view_store import member_key, members_key
    from app.adapters.view_json import encode_view
    from app.bootstrap import redis_sync_client

    client = redis_sync_client(settings, redis_url)
    pipe = client.pipeline(transaction=False)
    for i, (m, state) in enumerate(expected.items()):
        pipe.hset(member_key("v1", m), mapping={"seq": state.seq, "state": encode_view(state)})
        pipe.sadd(members_key("v1", m), m)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    client.close()


@contextmanager
def views_in_redis(label: str, members: int, events: int, redis_db: int) -> Iterator[tuple]:
    """(env, workload): a BenchEnv of its own (run id ``label`` + the time) whose Redis database holds
    the views of a simulator workload decided by the pure domain; everything deleted on exit."""
    from app.config import Settings
    from tools.bench import end_to_end
    from tools.bench.env import BenchEnv
    from tools.simulate.workload import WorkloadConfig

    settings = Settings()
    run_id = label + time.strftime("%H%M%S") + uuid.uuid4().hex[:3]
    env = BenchEnv(settings, run_id, redis_db, settings.stack_dir / "bench" / run_id)
    try:
        env.flush_redis()
        workload = end_to_end.prepare_workload(WorkloadConfig(seed=1, members=members, events=events))
        write_views(env.settings, env.redis_url, workload.expected)
        yield env, workload
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    from tools.bench import api_bench

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--events", type=int, default=30_000)
    p.add_argument("--redis-db", type=int, default=5)
    p.add_argument("--wrk-seconds", type=int, default=15)
    p.add_argument("--fixed-seconds", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--only", action="append", default=[], help="a variant name (repeatable)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment of the API processes (repeatable)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    with views_in_redis("api", args.members, args.events, args.redis_db) as (env, workload):
        results: dict = {"run_id": env.run_id, "variants": {}}
        pipeline = env.pipeline("api", 500, 1000, 1)
        extra = dict(e.split("=", 1) for e in args.env)
        for i, (name, server_args) in enumerate(VARIANTS.items()):
            if args.only and name not in args.only:
                continue
            print(f"[{name}]", flush=True)
            r = api_bench.run(env, pipeline, workload.expected, wrk_seconds=args.wrk_seconds, fixed_rate=args.rate,
                              fixed_seconds=args.fixed_seconds, server_args=server_args, server_env=extra,
                              generator_figures=i == 0, label=f"api-{i}")
            fx = r["fixed"]
            results["variants"][name] = {
                "server_args": list(server_args), "max_rate": r["max"]["rate"],
                "max_server_cores": (r["max"].get("cpu_share") or {}).get("server"), "per_core": r["max"]["per_core"],
                "max_p99_ms": r["max"].get("p99_ms"), "fixed_p50_ms": fx["p50_ms"], "fixed_p99_ms": fx["p99_ms"],
                "fixed_rate_achieved": fx["rate_achieved"], "fixed_errors": fx["errors"],
                "fixed_server_cores": (fx.get("cpu_share") or {}).get("server"), "raw": r}
            v = results["variants"][name]
            print(f"  {name}: max {v['max_rate']:,.0f} req/s on {v['max_server_cores']} cores "
                  f"({v['per_core'] or 0:,.0f} per core); at {args.rate:,.0f} req/s p50 {v['fixed_p50_ms']} ms, "
                  f"p99 {v['fixed_p99_ms']} ms", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
