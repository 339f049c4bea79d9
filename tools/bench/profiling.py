"""Sampling profiles of a running worker with py-spy (the `bench` extra), summarised for the report.

`Profiler(pid, path).start()` attaches ``py-spy record --format raw`` (collapsed stacks) to the
process; `stop()` ends it with SIGINT, which makes py-spy write the file, and returns the functions
that hold the most samples (self time: the frame on top of the stack; total: anywhere on the stack).
Only samples of threads holding the GIL are taken (``--gil``): in a CPU-bound asyncio worker that
is the time the event loop cannot do anything else.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, path: Path, rate: int = 67, echo=print):
        self.pid = pid
        self.path = Path(path)
        self.rate = rate
        self.echo = echo
        self._proc: subprocess.Popen | None = None
        self._started = 0.0

    def start(self) -> Profiler:
        exe = py_spy()
        if exe is None:
            self.echo("  profile: py-spy is not installed (pip install -e '.[bench]'); no profile taken")
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [exe, "record", "--pid", str(self.pid), "--format", "raw", "--output", str(self.path),
             "--rate", str(self.rate), "--gil", "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=open(self.path.with_suffix(".log"), "wb"))
        self._started = time.monotonic()
        return self

    def stop(self) -> dict | None:
        if self._proc is None:
            return None
        seconds = time.monotonic() - self._started  # sampled until now; py-spy then writes its file
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if not self.path.exists():
            return {"file": None, "error": self.path.with_suffix(".log").read_text(errors="replace")[-500:]}
        summary = summarise(self.path.read_text(errors="replace"))
        possible = seconds * self.rate
        summary.update({"file": str(self.path), "seconds": round(seconds, 1), "rate_hz": self.rate,
                        "gil_held": round(summary["samples"] / possible, 3) if possible else None})
        return summary


# The layers of a worker a sample is charged to: the frame nearest the top of the stack that matches a
# rule names it, so a statement issued by the event store counts for the Cassandra driver, and the
# event store's own work (rows, Avro) for the decider's append. py-spy names a library's frame by its
# path under site-packages, ``(cassandra/...)``, and ours by ``(app/...)``, so a library's marks start
# with the parenthesis. The driver's compiled code has no frames of its own: issuing a statement shows
# as our thin wrappers around it (``aio.py``, ``counting.py``). A stack with none of these frames is
# the event loop's own (or mode's services) when it runs there.
LAYERS = (
    ("decider: append (event-store rows, Avro encode, lookups, conditional batches)",
     ("CassandraEventStore._append", "CassandraEventStore.append", "CassandraEventStore._add_member",
      "CassandraEventStore.row", "CassandraEventStore._write_lookups", "Decider._append")),
    ("decider: snapshots", ("Decider._snapshot", "save_snapshot")),
    ("decider: cache-miss loads", ("CassandraEventStore.load", "CassandraEventStore._latest_snapshots",
                                   "Decider._states", "Decider._load")),
    ("decider: decode input", ("Decider._decode", "decode_input")),
    ("decider: publish (ledger outputs, progress)",
     ("Decider.publish", "KafkaOutbox", "BatchProducer", "decider_pipeline.<locals>.publish")),
    ("decider: decide (domain) and the rest", ("Decider.", "(app/service/decider.py", "PublishPipeline")),
    ("clock projector", ("advance_clocks", "ClockProjector", "RedisMemberClocks")),
    ("projector: decode, fold, Redis and Cassandra writes",
     ("Projector.", "(app/service/projector.py", "RedisViewStore", "CassandraReadModels", "_add_projector",
      "ledger_fold")),
    ("Faust and aiokafka: fetch, dispatch, acks", ("(faust/", "(aiokafka/")),
    ("Cassandra driver: issue and receive statements",
     ("(cassandra/", "(app/adapters/cassandra/aio.py", "(app/adapters/cassandra/counting.py")),
    ("redis-py", ("(redis/",)),
)
EVENT_LOOP = "the event loop and mode's services", ("(asyncio/", "(mode/", "(selectors.py")


def _stacks(collapsed: str):
    """(frames, samples) of each line of a collapsed-stack file (``a;b;c N``)."""
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def layers(collapsed: str) -> list[list]:
    """Samples per layer (``LAYERS``) of a collapsed-stack file: [label, samples, percent], in LAYERS order."""
    counts: Counter[str] = Counter()
    for frames, n in _stacks(collapsed):
        counts[_layer(frames)] += n
    return _layer_rows(counts)


def _layer_rows(counts: Counter[str]) -> list[list]:
    total = sum(counts.values())
    labels = [label for label, _ in LAYERS] + [EVENT_LOOP[0], "other"]
    return [[label, counts[label], round(100 * counts[label] / total, 1)] for label in labels] if total else []


def _layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for label, marks in LAYERS:
            if any(m in frame for m in marks):
                return label
    if any(m in frame for frame in frames for m in EVENT_LOOP[1]):
        return EVENT_LOOP[0]
    return "other"


def summarise(collapsed: str, top: int = 25) -> dict:
    """Top functions by self and total samples of a collapsed-stack file (``a;b;c N`` per line)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    by_layer: Counter[str] = Counter()
    samples = 0
    for raw, n in _stacks(collapsed):
        samples += n
        by_layer[_layer(raw)] += n
        frames = [_short(f) for f in raw]
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n

    def share(c: Counter) -> list[list]:
        return [[name, n, round(100 * n / samples, 1)] for name, n in c.most_common(top)] if samples else []

    return {"samples": samples, "self": share(own), "total": share(total), "layers": _layer_rows(by_layer)}


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``; line numbers vary between samples."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})" if where else name
