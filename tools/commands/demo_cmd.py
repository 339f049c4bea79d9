"""`ledger demo` (what `make run` runs): the worker and the read API on the local stack, fed by the
simulator at a steady rate, with a live one-line status. Ctrl-C stops everything cleanly."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from app.config import REPO_ROOT
from app.entrypoints.commands.errors import CommandError


def register(sub) -> None:
    p = sub.add_parser("demo", help="run worker + API with a simulated load and a live status line")
    p.add_argument("--rate", type=float, default=300.0, help="events per second published (default 300)")
    p.add_argument("--members", type=int, default=20_000)
    p.add_argument("--events", type=int, default=1_000_000, help="stop publishing after this many")
    p.add_argument("--seconds", type=float, help="stop the demo after this long (default: until Ctrl-C)")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    from app.bootstrap import kafka_connection
    from tools.demo.status import LagReader, status_line, take
    from tools.simulate.publish import SimulateError, check_topic, publish
    from tools.simulate.workload import WorkloadConfig, generate

    try:
        check_topic(kafka_connection(settings), settings.events_topic)
    except SimulateError as exc:
        raise CommandError(f"{exc} (run `make stack-up` first)") from None
    logs = settings.stack_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children = [
        _spawn(["worker", "--role", "all", "--metrics-port", str(settings.metrics_port)], logs / "demo-worker.log"),
        _spawn(["api"], logs / "demo-api.log"),
    ]
    print(f"worker (metrics on 127.0.0.1:{settings.metrics_port}) and read API "
          f"(http://{settings.api_host}:{settings.api_port}, token in LEDGER_API_TOKENS) started; "
          f"logs in {logs}; Ctrl-C to stop")

    stop = threading.Event()
    config = WorkloadConfig(seed=int(time.time()), members=args.members, events=args.events,
                            id_prefix=f"demo{int(time.time())}-")

    def items():
        for item in generate(config):
            if stop.is_set():
                return
            yield item

    publisher = threading.Thread(target=publish, name="demo-publisher", daemon=True,
                                 args=(items(), kafka_connection(settings), settings.events_topic, args.rate))
    publisher.start()
    from app import bootstrap

    lag = LagReader(settings, bootstrap.group_id(settings, "all"))
    deadline = time.monotonic() + args.seconds if args.seconds else None
    previous = None
    try:
        while deadline is None or time.monotonic() < deadline:
            dead = [c for c in children if c.poll() is not None]
            if dead:
                raise CommandError(f"a demo process exited (code {dead[0].returncode}); see {logs}")
            now = take(f"http://127.0.0.1:{settings.metrics_port}/metrics", lag)
            line = status_line(now, previous)
            previous = now
            if sys.stdout.isatty():
                print("\r" + line[:200].ljust(200), end="", flush=True)
            else:
                print(line, flush=True)
            time.sleep(1.0)  # the status refresh period
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping…", flush=True)
        stop.set()
        publisher.join(timeout=30)
        for child in children:
            _stop(child)
        lag.close()
    return 0


def _spawn(args: list[str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=REPO_ROOT, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True)


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
