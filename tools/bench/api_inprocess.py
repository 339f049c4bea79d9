"""The read API's own CPU per request, without HTTP: the ASGI app called in-process.

``python -m tools.bench.api_inprocess [--members N] [--requests N] [--profile]`` writes views of a
simulator workload to a Redis database of its own (``api_variants.views_in_redis``), builds the app with
``create_api`` and calls it directly with the bench's request mix (``api_bench.request_paths``),
authorised, one request at a time. It prints the process CPU time per request (``time.process_time``:
what the app and the Redis client cost, not the wait for Redis, and little moved by a noisy
machine), and with ``--profile`` the functions that took it (cProfile). uvicorn's HTTP parsing and
the socket are what ``api_bench`` adds on top. Run it from another checkout's folder to compare two
versions of the API on the same views.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time


async def _call(app, path: str, token: bytes, statuses: dict[int, int]) -> None:
    raw_path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": raw_path, "raw_path": raw_path.encode(), "query_string": query.encode(),
             "root_path": "", "headers": [(b"host", b"bench"), (b"authorization", b"Bearer " + token)],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    await app(scope, receive, send)


async def measure(settings, paths: list[str], profile: cProfile.Profile | None) -> tuple[float, dict[int, int]]:
    from app.entrypoints.api.app import create_api

    app = create_api(settings)
    token = sorted(settings.api_token_set)[0].encode()
    statuses: dict[int, int] = {}
    async with app.router.lifespan_context(app):
        for path in paths[:500]:  # warm-up: connections, the namespace pointer, first-call costs
            await _call(app, path, token, statuses)
        statuses.clear()
        if profile:
            profile.enable()
        began = time.process_time()
        for path in paths:
            await _call(app, path, token, statuses)
        cpu = time.process_time() - began
        if profile:
            profile.disable()
    return cpu / len(paths), statuses


def main(argv: list[str] | None = None) -> int:
    from tools.bench import api_bench
    from tools.bench.api_variants import views_in_redis

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=5_000)
    p.add_argument("--events", type=int, default=15_000)
    p.add_argument("--requests", type=int, default=5_000)
    p.add_argument("--rounds", type=int, default=3, help="measurements, each printed (default 3)")
    p.add_argument("--redis-db", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="print the 30 functions with the most own time")
    args = p.parse_args(argv)
    with views_in_redis("inproc", args.members, args.events, args.redis_db) as (env, workload):
        paths = api_bench.request_paths(workload.expected, n=len(workload.expected))
        paths = (paths * (args.requests // len(paths) + 1))[:args.requests]
        settings = env.settings.model_copy(update={"redis_url": env.redis_url})
        for i in range(args.rounds):
            profile = cProfile.Profile() if args.profile and i == args.rounds - 1 else None
            per_request, statuses = asyncio.run(measure(settings, paths, profile))
            print(f"round {i + 1}: {per_request * 1e6:.1f} us of CPU per request over {len(paths):,} requests "
                  f"(statuses {statuses})", flush=True)
            if profile:
                pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
