"""The read API's latency at a fixed rate, measured by vegeta (a Go load generator that sends at a
constant rate, open loop) beside the bench's own asyncio generator.

``python -m tools.bench.api_vegeta [--rate 1000] [--seconds 30] [--rounds 2]`` writes the views of a
simulator workload to a Redis database of its own (as `tools.bench.api_variants` does), starts a
trivial HTTP server and `ledger api`, then, each round: vegeta against the trivial server (the
generator's own floor), vegeta against the API, and the asyncio generator against the API. It needs
vegeta on the PATH, or its path in VEGETA:
``go install github.com/tsenart/vegeta/v12@v12.13.0`` (then ``$(go env GOPATH)/bin/vegeta``).
The asyncio generator's own p99 moved between 1.5 and 4.7 ms across runs on the 2-core machine;
vegeta's stays under 1 ms there, so the API's tail can be told from the generator's.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

VEGETA_VERSION = "v12.13.0"


def targets(port: int, paths: list[str], token: str) -> str:
    """vegeta's HTTP target format: one request per block, blocks separated by a blank line."""
    return "".join(f"GET http://127.0.0.1:{port}{p}\nAuthorization: Bearer {token}\nAccept: application/json\n\n"
                   for p in paths)


def summary(report: dict) -> dict:
    """The figures of ``vegeta report -type=json`` this tool prints (latencies in ms)."""
    latencies = report["latencies"]
    figures = {name: round(latencies[key] / 1e6, 3)
               for name, key in (("p50_ms", "50th"), ("p90_ms", "90th"), ("p99_ms", "99th"), ("max_ms", "max"))}
    errors = sum(n for code, n in (report.get("status_codes") or {}).items() if code != "200")
    return {**figures, "requests": report["requests"], "rate": round(report["rate"], 1), "errors": errors}


def attack(exe: str, work: Path, label: str, port: int, paths: list[str], token: str, rate: float,
           seconds: float) -> dict:
    target_file = work / f"vegeta-{label}.txt"
    target_file.write_text(targets(port, paths, token))
    results = work / f"vegeta-{label}.bin"
    subprocess.run([exe, "attack", f"-targets={target_file}", f"-rate={int(rate)}/s", f"-duration={int(seconds)}s",
                    "-keepalive=true", f"-output={results}"], check=True, timeout=seconds + 60)
    out = subprocess.run([exe, "report", "-type=json", str(results)], capture_output=True, text=True, check=True,
                         timeout=60)
    return summary(json.loads(out.stdout))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=2_000)
    p.add_argument("--events", type=int, default=30_000)
    p.add_argument("--redis-db", type=int, default=5)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    exe = os.environ.get("VEGETA") or shutil.which("vegeta")
    if not exe:
        print(f"vegeta is not on the PATH (nor in VEGETA): go install github.com/tsenart/vegeta/v12@{VEGETA_VERSION}",
              file=sys.stderr)
        return 2

    from tools.bench import api_bench
    from tools.bench.api_variants import views_in_redis
    from tools.stack.process import free_port

    rounds: list[dict] = []
    with views_in_redis("vegeta", args.members, args.events, args.redis_db) as (env, workload):
        pipeline = env.pipeline("api", 500, 1000, 1)
        paths = api_bench.request_paths(workload.expected)
        paths_file = env.work_dir / "api-paths.json"
        paths_file.write_text(json.dumps(paths))
        trivial_port, api_port = free_port(), free_port()
        trivial = env.spawn("trivial-http", [sys.executable, "-m", "tools.bench.api_bench", "trivial",
                                             "--port", str(trivial_port)])
        api = env.spawn("api", [sys.executable, "-m", "app", "api", "--host", "127.0.0.1", "--port", str(api_port),
                                "--log-level", "warning", *api_bench.DEFAULT_SERVER],
                        {**pipeline.env(), "LEDGER_API_TOKENS": api_bench.TOKEN})
        try:
            api_bench._wait_http(f"http://127.0.0.1:{trivial_port}/", trivial)
            api_bench._wait_http(f"http://127.0.0.1:{api_port}/healthz", api)
            attack(exe, env.work_dir, "warm-up", api_port, paths, api_bench.TOKEN, args.rate, 5)
            for i in range(args.rounds):
                r = {"vegeta_trivial": attack(exe, env.work_dir, f"trivial-{i}", trivial_port, paths, api_bench.TOKEN,
                                              args.rate, min(args.seconds, 10)),
                     "vegeta_api": attack(exe, env.work_dir, f"api-{i}", api_port, paths, api_bench.TOKEN, args.rate,
                                          args.seconds)}
                own = api_bench._loadgen(env, f"asyncio-{i}", api_port, paths_file, "open", rate=args.rate,
                                         seconds=args.seconds, warmup=2)
                r["asyncio_api"] = {k: own[k] for k in ("p50_ms", "p99_ms", "rate_achieved", "errors")}
                rounds.append(r)
                for name, figures in r.items():
                    print(f"round {i + 1} {name}: {figures}", flush=True)
        finally:
            api.stop(10)
            trivial.stop(10)
    if args.out:
        args.out.write_text(json.dumps({"rate": args.rate, "seconds": args.seconds, "rounds": rounds}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
