"""Read API: maximum requests/s (wrk, closed loop) and latency at a fixed 1,000 req/s (open loop).

Load generators, and how each is shown not to be the bottleneck:
- **wrk** (Debian's package, installed here when absent and root) for the maximum. The same wrk
  settings are run against a trivial HTTP server (a fixed 200 answer from a bare asyncio protocol):
  wrk drives that far faster than the API's maximum, and the CPU share of wrk is recorded next to
  the API server's.
- **an open-loop asyncio generator** (`loadgen`, in this module, run in its own process) for the
  fixed rate. Requests are scheduled at fixed intervals whatever the answers do (no coordinated
  omission), each on an idle keep-alive connection (a new one when none is idle), and a request's
  latency runs from its *scheduled* time to its last response byte, so a late generator counts
  against itself. Its own capacity is measured against the trivial server: the closed-loop rate it
  reaches, and its p50/p99 at the same fixed rate (the floor the generator and loopback add).

The requests are a mix over members of the end-to-end run: 70% member summary, 20% licenses, 10%
title downloads, all authorised GETs against the real `ledger api` process (uvicorn).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tools.stack.process import free_port

TOKEN = "bench-token"


# --- the trivial server -------------------------------------------------------------------


class _Trivial(asyncio.Protocol):
    RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.buf += data
        while (i := self.buf.find(b"\r\n\r\n")) >= 0:
            self.buf = self.buf[i + 4:]
            self.transport.write(self.RESPONSE)


async def _serve_trivial(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Trivial, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


# --- the open-loop generator ----------------------------------------------------------------


class _Conn:
    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer


async def _request(conn: _Conn, raw: bytes) -> int:
    conn.writer.write(raw)
    head = await conn.reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    length = int(m.group(1)) if m else 0
    if length:
        await conn.reader.readexactly(length)
    return status


async def _connect(host: str, port: int) -> _Conn:
    reader, writer = await asyncio.open_connection(host, port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _Conn(reader, writer)


def _raw_requests(host: str, port: int, paths: list[str]) -> list[bytes]:
    return [(f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
             f"Accept: application/json\r\n\r\n").encode() for p in paths]


async def open_loop(host: str, port: int, paths: list[str], rate: float, seconds: float, warmup_s: float) -> dict:
    """Requests at fixed intervals; latency from the scheduled time to the full response."""
    raws = _raw_requests(host, port, paths)
    idle: list[_Conn] = []
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    error_kinds: dict[str, int] = {}
    reconnects = 0
    opened = 0
    in_flight = 0
    max_in_flight = 0
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task] = set()
    for _ in range(8):
        idle.append(await _connect(host, port))
        opened += 1

    async def one(i: int, scheduled: float, measured: bool) -> None:
        nonlocal errors, opened, in_flight, max_in_flight, reconnects
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        conn = idle.pop() if idle else None
        raw = raws[i % len(raws)]
        try:
            if conn is not None:
                try:
                    status = await _request(conn, raw)
                except (OSError, asyncio.IncompleteReadError):
                    # the server closed an idle keep-alive connection (uvicorn: after 5 s idle): the
                    # request goes again on a new connection, as any HTTP client does; its latency
                    # still runs from the scheduled time
                    conn.writer.close()
                    conn = None
                    reconnects += 1
            if conn is None:
                conn = await _connect(host, port)
                opened += 1
                status = await _request(conn, raw)
            done = loop.time()
            idle.append(conn)
            if measured:
                latencies.append(done - scheduled)
                statuses[status] = statuses.get(status, 0) + 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors += 1
            error_kinds[type(exc).__name__] = error_kinds.get(type(exc).__name__, 0) + 1
            if conn is not None:
                conn.writer.close()
        finally:
            in_flight -= 1

    interval = 1.0 / rate
    start = loop.time() + 0.05
    measure_from = start + warmup_s
    end = measure_from + seconds
    i = 0
    late = 0.0
    while True:
        scheduled = start + i * interval
        if scheduled >= end:
            break
        now = loop.time()
        if scheduled > now:
            await asyncio.sleep(scheduled - now)
            now = loop.time()
        if scheduled >= measure_from:
            late = max(late, now - scheduled)
        task = asyncio.ensure_future(one(i, scheduled, scheduled >= measure_from))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    for conn in idle:
        conn.writer.close()
    lat = sorted(x * 1000 for x in latencies)
    return {
        "mode": "open_loop",
        "rate_target": rate,
        "seconds": seconds,
        "warmup_s": warmup_s,
        "requests": len(lat),
        "rate_achieved": len(lat) / seconds,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": errors,
        "error_kinds": error_kinds,
        "reconnects": reconnects,
        "connections_opened": opened,
        "max_in_flight": max_in_flight,
        "max_schedule_lag_ms": round(late * 1000, 3),
        "p50_ms": _pct(lat, 50),
        "p90_ms": _pct(lat, 90),
        "p99_ms": _pct(lat, 99),
        "p999_ms": _pct(lat, 99.9),
        "max_ms": lat[-1] if lat else None,
    }


async def closed_loop(host: str, port: int, paths: list[str], connections: int, seconds: float) -> dict:
    """``connections`` clients each sending the next request when the previous answer is in."""
    raws = _raw_requests(host, port, paths)
    loop = asyncio.get_running_loop()
    count = 0
    errors = 0
    end = loop.time() + seconds

    async def client(k: int) -> None:
        nonlocal count, errors
        conn = await _connect(host, port)
        i = k
        while loop.time() < end:
            try:
                await _request(conn, raws[i % len(raws)])
                count += 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                conn = await _connect(host, port)
            i += connections
        conn.writer.close()

    began = loop.time()
    await asyncio.gather(*(client(k) for k in range(connections)))
    elapsed = loop.time() - began
    return {"mode": "closed_loop", "connections": connections, "seconds": round(elapsed, 3), "requests": count,
            "rate": count / elapsed, "errors": errors}


def _pct(values: list[float], q: float) -> float | None:
    from tools.bench.env import percentile

    v = percentile(values, q)
    return None if v is None else round(v, 3)


# --- wrk --------------------------------------------------------------------------------------


def ensure_wrk(echo=print) -> str | None:
    """wrk on the PATH, installed from Debian when absent and root (as the Makefile does for tools)."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    echo("  installing wrk (apt-get install wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    ok = subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True).returncode == 0
    if not ok:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True)
    return shutil.which("wrk")


def wrk_script(path: Path, paths: list[str]) -> Path:
    body = ",\n".join(json.dumps(p) for p in paths)
    path.write_text(
        "local paths = {\n" + body + "\n}\n"
        "local i = 0\n"
        f"local headers = {{[\"Authorization\"] = \"Bearer {TOKEN}\", [\"Accept\"] = \"application/json\"}}\n"
        "request = function()\n"
        "  i = i % #paths + 1\n"
        "  return wrk.format(\"GET\", paths[i], headers)\n"
        "end\n")
    return path


def run_wrk(env, exe: str, url: str, script: Path, threads: int, connections: int, seconds: int,
            server_pid: int, label: str) -> dict:
    from tools.bench.env import CpuMeter

    argv = [exe, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    proc = env.spawn(f"wrk-{label}", argv)
    meter = CpuMeter({"wrk": proc.pid, "server": server_pid, **{k: v for k, v in env.stack.items() if k == "redis"}})
    meter.start()
    time.sleep(max(0.5, seconds - 0.5))  # CPU shares over the run, read while wrk is still alive
    shares = meter.stop()
    proc.popen.wait(seconds + 30)
    out = proc.log.read_text(errors="replace")
    parsed = parse_wrk(out)
    parsed.update({"threads": threads, "connections": connections, "seconds": seconds, "cpu_share": shares,
                   "generator": "wrk"})
    return parsed


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(out: str) -> dict:
    def ms(text: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s|m)$", text.strip())
        return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")

    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    dist = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    return {
        "rate": float(rate.group(1)) if rate else None,
        "requests": int(total.group(1)) if total else None,
        "p50_ms": ms(dist["50"]) if "50" in dist else None,
        "p90_ms": ms(dist["90"]) if "90" in dist else None,
        "p99_ms": ms(dist["99"]) if "99" in dist else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sock_err.group(1).strip() if sock_err else None,
    }


# --- the bench side ------------------------------------------------------------------------


def _wait_http(url: str, proc, timeout: float = 60) -> None:
    from tools.bench.env import BenchError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{url} did not answer within {timeout:.0f} s:\n{proc.tail()}")


def request_paths(expected: dict, n: int = 2000, seed: int = 7) -> list[str]:
    """A fixed mix of read-API paths over members that have views."""
    rng = random.Random(seed)
    members = sorted(expected)
    picked = rng.sample(members, min(n, len(members)))
    paths = []
    for i, m in enumerate(picked):
        k = i % 10
        if k < 7:
            paths.append(f"/v1/members/{m}")
        elif k < 9:
            paths.append(f"/v1/members/{m}/licenses")
        else:
            state = expected[m]
            titles = sorted({lic.title_id for lic in state.licenses.values()}) or ["t00000"]
            paths.append(f"/v1/members/{m}/titles/{titles[0]}/downloads?year=2026")
    return paths


def _loadgen(env, label: str, port: int, paths_file: Path, mode: str, **kw) -> dict:
    from tools.bench.env import BenchError

    out = env.work_dir / f"loadgen-{label}.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tools.bench.api_bench", "loadgen", "--port", str(port), "--paths", str(paths_file),
            "--mode", mode, "--out", str(out)] + [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    proc = env.spawn(f"loadgen-{label}", argv)
    proc.popen.wait(600)
    if proc.popen.returncode != 0 or not out.exists():
        raise BenchError(f"load generator {label} failed:\n{proc.tail()}")
    result = json.loads(out.read_text())
    result["generator"] = "asyncio open loop (tools.bench.api_bench)" if mode == "open" else \
        "asyncio closed loop (tools.bench.api_bench)"
    return result


DEFAULT_SERVER = ("--workers", "1")  # the API as `ledger api` serves by default (uvloop, httptools)


def run(env, pipeline, expected: dict, *, wrk_seconds: int, fixed_rate: float, fixed_seconds: float,
        connections: int = 32, echo=print, server_args: tuple[str, ...] = DEFAULT_SERVER,
        server_env: dict[str, str] | None = None, generator_figures: bool = True, label: str = "api") -> dict:
    """Every read-API figure; ``expected`` are the members with views (from the end-to-end run).
    ``server_args`` are `ledger api` options (workers, loop, http parser); without
    ``generator_figures`` the trivial-server figures (the generators' own capacity) are left out."""
    paths = request_paths(expected)
    paths_file = env.work_dir / "api-paths.json"
    paths_file.write_text(json.dumps(paths))
    script = wrk_script(env.work_dir / "api-paths.lua", paths)
    result: dict = {"paths": len(paths), "mix": "70% summary, 20% licenses, 10% title downloads",
                    "server_args": list(server_args)}

    trivial = trivial_port = None
    if generator_figures:
        trivial_port = free_port()
        trivial = env.spawn("trivial-http", [sys.executable, "-m", "tools.bench.api_bench", "trivial",
                                             "--port", str(trivial_port)])
        _wait_http(f"http://127.0.0.1:{trivial_port}/", trivial)
    api_port = free_port()
    api = env.spawn(label, [sys.executable, "-m", "app", "api", "--host", "127.0.0.1", "--port", str(api_port),
                            "--log-level", "warning", *server_args],
                    {**pipeline.env(), "LEDGER_API_TOKENS": TOKEN, **(server_env or {})})
    _wait_http(f"http://127.0.0.1:{api_port}/healthz", api)

    exe = ensure_wrk(echo)
    try:
        if exe:
            if trivial is not None:
                result["trivial_wrk"] = run_wrk(env, exe, f"http://127.0.0.1:{trivial_port}", script, 1,
                                                connections, wrk_seconds, trivial.pid, "trivial")
                echo(f"  wrk vs trivial server: {result['trivial_wrk']['rate']:,.0f} req/s")
            run_wrk(env, exe, f"http://127.0.0.1:{api_port}", script, 1, connections, min(3, wrk_seconds), api.pid,
                    f"{label}-warmup")
            result["max"] = run_wrk(env, exe, f"http://127.0.0.1:{api_port}", script, 1, connections,
                                    wrk_seconds, api.pid, label)
        else:
            echo("  wrk is not available (not root?): the closed-loop asyncio generator measures the maximum")
            result["trivial_wrk"] = None
            result["max"] = _loadgen(env, f"{label}-max", api_port, paths_file, "closed", connections=connections,
                                     seconds=wrk_seconds)
        server_cores = (result["max"].get("cpu_share") or {}).get("server")
        result["max"]["per_core"] = result["max"]["rate"] / server_cores if server_cores else None
        echo(f"  read API maximum ({' '.join(server_args)}): {result['max']['rate']:,.0f} req/s "
             f"(p50 {result['max'].get('p50_ms')} ms, p99 {result['max'].get('p99_ms')} ms at {connections} "
             f"connections; server {server_cores} cores, {result['max']['per_core'] or 0:,.0f} req/s per core)")
        if trivial is not None:
            result["generator_capacity"] = _loadgen(env, "trivial-closed", trivial_port, paths_file, "closed",
                                                    connections=connections, seconds=min(wrk_seconds, 8))
            result["generator_floor"] = _loadgen(env, "trivial-open", trivial_port, paths_file, "open",
                                                 rate=fixed_rate, seconds=min(fixed_seconds, 10), warmup=1)
            echo(f"  asyncio generator: {result['generator_capacity']['rate']:,.0f} req/s closed loop vs trivial; "
                 f"at {fixed_rate:,.0f} req/s vs trivial p50 {result['generator_floor']['p50_ms']} ms, "
                 f"p99 {result['generator_floor']['p99_ms']} ms")
        from tools.bench.env import CpuMeter

        meter = CpuMeter({"server": api.pid, **{k: v for k, v in env.stack.items() if k == "redis"}}).start()
        result["fixed"] = _loadgen(env, f"{label}-fixed", api_port, paths_file, "open", rate=fixed_rate,
                                   seconds=fixed_seconds, warmup=2)
        result["fixed"]["cpu_share"] = meter.stop()
        echo(f"  read API at {fixed_rate:,.0f} req/s: p50 {result['fixed']['p50_ms']} ms, "
             f"p99 {result['fixed']['p99_ms']} ms ({result['fixed']['requests']:,} requests, "
             f"{result['fixed']['errors']} errors)")
        result["api_vm_hwm_bytes"] = api.status().get("VmHWM")
    finally:
        api.stop(10)
        if trivial is not None:
            trivial.stop(10)
    result["uvicorn"] = _uvicorn_flavour(server_args)
    return result


def _uvicorn_flavour(server_args=()) -> dict:
    """What the server ran: uvloop and httptools when installed, unless the options said otherwise."""
    import importlib.util

    args = list(server_args)

    def option(name: str) -> str:
        return args[args.index(name) + 1] if name in args[:-1] else "auto"

    workers = int(option("--workers")) if option("--workers") != "auto" else 1
    return {"uvloop": option("--loop") in ("auto", "uvloop") and importlib.util.find_spec("uvloop") is not None,
            "httptools": option("--http") in ("auto", "httptools")
            and importlib.util.find_spec("httptools") is not None,
            "workers": workers}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="read-API load helpers")
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("trivial")
    t.add_argument("--port", type=int, required=True)
    g = sub.add_parser("loadgen")
    g.add_argument("--port", type=int, required=True)
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--paths", type=Path, required=True)
    g.add_argument("--mode", choices=["open", "closed"], required=True)
    g.add_argument("--rate", type=float, default=1000.0)
    g.add_argument("--seconds", type=float, default=10.0)
    g.add_argument("--warmup", type=float, default=1.0)
    g.add_argument("--connections", type=int, default=32)
    g.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.what == "trivial":
        asyncio.run(_serve_trivial(args.port))
        return 0
    paths = json.loads(args.paths.read_text())
    if args.mode == "open":
        result = asyncio.run(open_loop(args.host, args.port, paths, args.rate, args.seconds, args.warmup))
    else:
        result = asyncio.run(closed_loop(args.host, args.port, paths, args.connections, args.seconds))
    result["cpu_seconds"] = round(sum(os.times()[:2]), 3)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
