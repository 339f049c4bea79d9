"""Prometheus metrics and health of the workers (served by `ledger worker` on LEDGER_METRICS_PORT).

The metrics port serves three paths (`serve_worker_http`):

- ``/metrics``: the Prometheus exposition of this process;
- ``/healthz``: 200 while the process serves HTTP (liveness). A stalled worker is still alive:
  restarting it would not make a store that does not answer come back;
- ``/readyz``: 200 when the worker is ready, else 503, each with a JSON body. Not ready is either
  ``not_assigned`` (the worker has not yet received its first partition assignment: it is still
  connecting or joining its consumer groups; later rebalances do not make it unready) or
  ``stalled`` (a stage has had a batch in flight - failing and being retried, or hanging - for
  longer than LEDGER_STALL_TIMEOUT_S).

A stage with no input is idle, never stalled: ``ledger_last_progress_timestamp_seconds`` then stops
moving, so alert on ``ledger_worker_stalled``, not on the age of the last progress.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from app.adapters.kafka.outbox import SOURCE_TIMESTAMP_HEADER

log = logging.getLogger(__name__)

EVENTS = Counter("ledger_decider_events_total", "input messages by outcome", ["outcome"])
REJECTIONS = Counter("ledger_decider_rejections_total", "rejected events by reason", ["reason"])
DEAD_LETTERS = Counter("ledger_decider_dead_letters_total", "dead letters by error code", ["code"])
STORE_CONFLICTS = Counter("ledger_decider_store_conflicts_total", "conditional appends lost to another writer")
STORE_BEHIND = Counter("ledger_decider_store_behind_total",
                       "members whose stored head stood behind a position the store had acknowledged")
SNAPSHOTS = Counter("ledger_decider_snapshots_total", "member snapshots written")
DIVERTED = Counter("ledger_decider_outputs_diverted_total",
                   "ledger entries, rejections and dead letters published as (headers-only) dead letters "
                   "instead because they could never be published, by code", ["code"])
TRUNCATED = Counter("ledger_decider_dead_letters_truncated_total", "dead letters cut to fit the producer's limit")
DROPPED = Counter("ledger_decider_outputs_dropped_total", "outputs that could not be published in any form")
BATCH_SECONDS = Histogram("ledger_batch_seconds", "micro-batch processing time", ["stage"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
BATCH_SIZE = Histogram("ledger_batch_size", "messages per micro-batch", ["stage"],
                       buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000))
PROJECTED = Counter("ledger_projector_entries_total", "ledger entries by outcome", ["outcome"])
PUBLISH_TO_VIEW = Histogram(
    "ledger_publish_to_view_seconds",
    "from an event's publish (its input message's Kafka timestamp, carried on its ledger entry) to the end of the "
    "projector batch that wrote its view", buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
STALLED = Gauge("ledger_worker_stalled", "1 while a batch of the stage has been in flight (failing and retried, "
                "or hanging) for longer than LEDGER_STALL_TIMEOUT_S, else 0", ["stage"])
LAST_PROGRESS = Gauge("ledger_last_progress_timestamp_seconds",
                      "Unix time the stage last finished a batch (the worker's start until it has)", ["stage"])
ASSIGNMENTS = Counter("ledger_worker_assignments_total",
                      "partition assignments this worker received: one per rebalance it took part in")
CACHE_LOOKUPS = Counter("ledger_member_cache_lookups_total",
                        "member states a batch needed, by stage and where they came from (hit: the cache, miss: the store)",
                        ["stage", "result"])
ROWS_FOLDED = Counter("ledger_decider_rows_folded_total",
                      "stored rows after the latest snapshot that the decider's loads folded onto it")
BATCH_FAILURES = Counter("ledger_batch_failures_total", "failed attempts of micro-batches (each is retried)", ["stage"])
SEEKS_BACK = Counter("ledger_partition_seeks_back_total",
                     "partitions sought back because the consumer skipped messages (skipped: a gap holding "
                     "records; idle: nothing handed over below the partition's end)", ["topic", "reason"])


def record_decider_batch(report, seconds: float) -> None:
    BATCH_SECONDS.labels("decider").observe(seconds)
    BATCH_SIZE.labels("decider").observe(report.messages)
    EVENTS.labels("accepted").inc(report.accepted)
    EVENTS.labels("rejected").inc(sum(report.rejected.values()))
    EVENTS.labels("duplicate").inc(report.duplicates)
    EVENTS.labels("dead_letter").inc(sum(report.dead_letters.values()))
    for reason, n in report.rejected.items():
        REJECTIONS.labels(reason).inc(n)
    for code, n in report.dead_letters.items():
        DEAD_LETTERS.labels(code).inc(n)
    STORE_CONFLICTS.inc(report.conflicts)
    STORE_BEHIND.inc(report.store_behind)
    SNAPSHOTS.inc(report.snapshots)
    for code, n in report.diverted.items():
        DIVERTED.labels(code).inc(n)
    TRUNCATED.inc(report.truncated)
    DROPPED.inc(report.dropped)
    CACHE_LOOKUPS.labels("decider", "hit").inc(report.cache_hits)
    CACHE_LOOKUPS.labels("decider", "miss").inc(report.loaded)
    ROWS_FOLDED.inc(report.rows_folded)


def record_seek_back(topic: str, reason: str) -> None:
    SEEKS_BACK.labels(topic, reason).inc()


def record_publish_to_view(messages, now_s: float) -> None:
    """One observation per ledger message of a batch the projector applied and wrote that carries
    its input's timestamp (the decider sets it; a redelivered entry counts again, later)."""
    for m in messages:
        for name, value in m.headers:
            if name == SOURCE_TIMESTAMP_HEADER:
                try:
                    PUBLISH_TO_VIEW.observe(max(0.0, now_s - int(value) / 1000))
                except ValueError:
                    pass
                break


def record_projector_batch(report, seconds: float) -> None:
    BATCH_SECONDS.labels("projector").observe(seconds)
    BATCH_SIZE.labels("projector").observe(report.messages)
    PROJECTED.labels("applied").inc(report.applied)
    PROJECTED.labels("duplicate").inc(report.duplicates)
    PROJECTED.labels("gap_filled").inc(report.gap_entries)
    PROJECTED.labels("undecodable").inc(report.undecodable)
    CACHE_LOOKUPS.labels("projector", "hit").inc(report.cache_hits)
    CACHE_LOOKUPS.labels("projector", "miss").inc(report.loaded)


# --- progress, stalls and readiness ---------------------------------------------------------


@dataclass
class _Batch:
    started: float  # monotonic
    failures: int = 0  # failed attempts
    last_error: str = ""


@dataclass
class _Stage:
    last_progress: float  # wall clock (Unix time)
    in_flight: dict[int, _Batch] = field(default_factory=dict)  # by token, oldest first
    batches: int = 0  # batches finished
    reported_stall: bool = False

    @property
    def oldest(self) -> _Batch | None:
        return next(iter(self.in_flight.values()), None)


def _token(s: _Stage, token: int | None) -> int:
    """``token``, or the stage's latest batch in flight (0, no batch, when none is)."""
    return token if token is not None else next(reversed(s.in_flight), 0)


class WorkerHealth:
    """What the worker's stages are doing, for the stall gauges and /readyz.

    The agents report each batch (``batch_started``, ``batch_failed`` per failed attempt,
    ``batch_finished``) from the event loop; the HTTP server reads from its own threads."""

    def __init__(self, stages: Iterable[str], stall_timeout_s: float, *,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        if stall_timeout_s <= 0:
            raise ValueError("the stall timeout must be positive")
        self.stall_timeout_s = stall_timeout_s
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._assigned = False
        self._tokens = 0
        self._stages = {stage: _Stage(last_progress=wall_clock()) for stage in stages}
        for stage, state in self._stages.items():
            STALLED.labels(stage).set_function(partial(self._stalled_gauge, stage))
            LAST_PROGRESS.labels(stage).set(state.last_progress)

    @property
    def stages(self) -> list[str]:
        return list(self._stages)

    def assigned(self) -> None:
        """The worker received a partition assignment (it may be empty): the first makes it ready."""
        ASSIGNMENTS.inc()
        with self._lock:
            self._assigned = True

    def batch_started(self, stage: str) -> int:
        """A batch of ``stage`` is in flight; returns its token for ``batch_failed`` and
        ``batch_finished``. A stage may have several (the decider publishes one batch while it
        decides the next): its stall is judged by the oldest."""
        with self._lock:
            self._tokens += 1
            self._stages[stage].in_flight[self._tokens] = _Batch(self._clock())
            return self._tokens

    def batch_failed(self, stage: str, exc: BaseException, token: int | None = None) -> None:
        """``token``: the batch (default: the stage's latest)."""
        BATCH_FAILURES.labels(stage).inc()
        with self._lock:
            s = self._stages[stage]
            b = s.in_flight.get(_token(s, token))
            if b is None:
                return
            b.failures += 1
            b.last_error = f"{type(exc).__name__}: {exc}"[:500]
            in_flight = self._clock() - b.started
            newly_stalled = self._stalled(s) and not s.reported_stall
            if newly_stalled:
                s.reported_stall = True
        if newly_stalled:
            log.error("%s is stalled: its batch has failed for %.0fs (%d attempts), last: %s",
                      stage, in_flight, b.failures, b.last_error)

    def batch_finished(self, stage: str, ok: bool, token: int | None = None, progressed: bool = True) -> None:
        """``ok``: the batch is done; otherwise it was abandoned (the agent is stopping).
        ``token``: the batch (default: the stage's latest); ``progressed``: whether its end counts as
        the stage's progress (a decided batch counts once it is published)."""
        with self._lock:
            s = self._stages[stage]
            b = s.in_flight.pop(_token(s, token), None)
            recovered = s.reported_stall and not self._stalled(s)
            if recovered:
                s.reported_stall = False
            if ok and progressed:
                s.batches += 1
                s.last_progress = self._wall()
                LAST_PROGRESS.labels(stage).set(s.last_progress)
        if ok and recovered and b is not None:
            log.warning("%s is progressing again: its batch succeeded after %.0fs", stage, self._clock() - b.started)

    def stalled(self, stage: str) -> bool:
        with self._lock:
            return self._stalled(self._stages[stage])

    def _stalled(self, s: _Stage) -> bool:
        oldest = s.oldest
        return oldest is not None and self._clock() - oldest.started > self.stall_timeout_s

    def _stalled_gauge(self, stage: str) -> float:
        return 1.0 if self.stalled(stage) else 0.0

    def readiness(self) -> tuple[bool, dict]:
        """(ready, the JSON body of /readyz)."""
        with self._lock:
            now = self._clock()
            stages = {name: {"stalled": self._stalled(s),
                             "in_flight_s": None if (b := s.oldest) is None else round(now - b.started, 1),
                             "failed_attempts": b.failures if b else 0, "last_error": (b.last_error if b else "") or None,
                             "batches": s.batches, "last_progress": s.last_progress}
                      for name, s in self._stages.items()}
            assigned = self._assigned
        stalled = [n for n, s in stages.items() if s["stalled"]]
        body: dict = {"ready": False, "stall_timeout_s": self.stall_timeout_s, "stages": stages}
        if not assigned:
            body.update(reason="not_assigned", detail="waiting for the first partition assignment")
        elif stalled:
            body.update(reason="stalled", detail="; ".join(
                f"{n}: a batch in flight for {stages[n]['in_flight_s']:.0f}s, {stages[n]['failed_attempts']} "
                f"failed attempt(s), last: {stages[n]['last_error']}" for n in stalled))
        else:
            body["ready"] = True
        return body["ready"], body


def serve_worker_http(health: WorkerHealth, port: int, addr: str) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz on ``addr:port`` from a daemon thread (``port`` 0: any
    free port, see ``server_address``). Raises OSError when the port is taken."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a client that connects and sends nothing does not hold a thread for ever

        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
            elif path == "/healthz":
                self._json(200, {"alive": True})
            elif path == "/readyz":
                ready, body = health.readiness()
                self._json(200 if ready else 503, body)
            else:
                self._json(404, {"error": "not found", "paths": ["/metrics", "/healthz", "/readyz"]})

        def _json(self, status: int, body: dict) -> None:
            self._send(status, "application/json", json.dumps(body).encode())

        def _send(self, status: int, content_type: str, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet: scraped every few seconds
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    server = Server((addr, port), Handler)
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    return server


# --- consumer lag (set every LEDGER_LAG_INTERVAL_S by the worker's lag exporter) ------------------
# Every worker of a group exports the same values for all the group's partitions: aggregate with max.

LAG_MESSAGES = Gauge("ledger_consumer_lag_messages",
                     "end offset minus the worker's group's committed offset, by the stage reading the topic",
                     ["role", "topic", "partition"])
LAG_SECONDS = Gauge("ledger_consumer_lag_seconds",
                    "age of the oldest unprocessed message (now minus the timestamp of the message at the "
                    "committed offset); 0 without lag", ["role", "topic", "partition"])
GROUP_MEMBERS = Gauge("ledger_consumer_group_members",
                      "members of the consumer groups that run a role (its own group plus the `all` group); "
                      "0: nothing runs it", ["role"])
LAG_ERRORS = Counter("ledger_consumer_lag_errors", "lag measurements that failed (the gauges keep their last values)")
_lag_labels: set[tuple[str, str, str]] = set()


def record_lag(partitions, members_by_role: dict[str, int]) -> None:
    """``partitions``: the PartitionLag of the worker's group; gauges of partitions no longer
    reported (a topic renamed, say) are removed."""
    seen = set()
    for p in partitions:
        labels = (p.role, p.topic, str(p.partition))
        seen.add(labels)
        LAG_MESSAGES.labels(*labels).set(p.messages)
        LAG_SECONDS.labels(*labels).set(p.seconds)
    for labels in _lag_labels - seen:
        LAG_MESSAGES.remove(*labels)
        LAG_SECONDS.remove(*labels)
    _lag_labels.clear()
    _lag_labels.update(seen)
    for role, n in members_by_role.items():
        GROUP_MEMBERS.labels(role).set(n)
