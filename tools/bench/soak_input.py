"""The soak's input: the simulator's workload published at a fixed rate, in a process of its own.

``python -m tools.bench.soak_input --topic T --rate R --events N --seed S --members M --id-prefix P
--status FILE [--skip K --stream-events TOTAL]`` generates the same items as ``ledger simulate``
(good, limit-breaking, duplicate, malformed and undecodable) and publishes them with the simulator's
rate-limited publisher: N items after the first K of a stream of TOTAL (default K + N) items, so that
the soak's warm-up and its minutes are one workload. Unlike
``ledger simulate`` it does not stop at a failed delivery: the soak counts publish failures per
minute, so a failed chunk is recorded and publishing goes on with the next items. ``FILE`` is
rewritten (atomically) about once a second: items acknowledged, failures, the last errors, done.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

from app.bootstrap import kafka_connection

STATUS_EVERY_S = 1.0


class _Status:
    def __init__(self, path: Path, events: int, rate: float):
        self.path = path
        self.data = {"events": events, "rate": rate, "acknowledged": 0, "taken": 0, "publish_failures": 0,
                     "items_unacknowledged": 0, "errors": [], "done": False, "started_at": time.time(),
                     "elapsed_s": 0.0}
        self._written = 0.0

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < STATUS_EVERY_S:
            return
        self._written = now
        self.data["elapsed_s"] = round(time.time() - self.data["started_at"], 3)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)


def read_status(path: Path) -> dict | None:
    """The publisher's last status (None before its first)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    from app.config import Settings
    from tools.simulate.publish import PublishError, publish
    from tools.simulate.workload import WorkloadConfig, generate

    p = argparse.ArgumentParser(prog="python -m tools.bench.soak_input", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--members", type=int, default=100_000)
    p.add_argument("--id-prefix", default="")
    p.add_argument("--status", required=True)
    p.add_argument("--skip", type=int, default=0, help="items of the stream before the first published")
    p.add_argument("--stream-events", type=int, help="size of the whole stream (default: skip + events)")
    args = p.parse_args(argv)

    total = args.skip + args.events if args.stream_events is None else args.stream_events
    if total < args.skip + args.events:
        p.error("--stream-events must be at least --skip + --events")
    config = WorkloadConfig(seed=args.seed, members=args.members, events=total, id_prefix=args.id_prefix)
    status = _Status(Path(args.status), args.events, args.rate)
    data = status.data
    items = itertools.islice(generate(config), args.skip, args.skip + args.events)

    def counted():
        for item in items:
            data["taken"] += 1
            yield item

    remaining = counted()
    acknowledged_before = 0

    def progress(acknowledged: int) -> None:
        data["acknowledged"] = acknowledged_before + acknowledged
        status.write()

    connection = kafka_connection(Settings())
    status.write(force=True)
    while True:
        try:
            publish(remaining, connection, args.topic, args.rate, on_progress=progress)
            break
        except PublishError as exc:  # counted, and the next items go out: the soak goes on
            acknowledged_before = data["acknowledged"]
            data["publish_failures"] += 1
            data["items_unacknowledged"] = data["taken"] - data["acknowledged"]
            data["errors"] = (data["errors"] + [f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}"])[-5:]
            status.write(force=True)
            print(f"soak input: publish failed: {exc}", file=sys.stderr, flush=True)
            time.sleep(1.0)
    data["items_unacknowledged"] = data["taken"] - data["acknowledged"]
    data["done"] = True
    status.write(force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
