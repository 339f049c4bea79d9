"""Prometheus metrics of the workers (served by `ledger worker` on LEDGER_METRICS_PORT)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS = Counter("ledger_decider_events_total", "input messages by outcome", ["outcome"])
REJECTIONS = Counter("ledger_decider_rejections_total", "rejected events by reason", ["reason"])
DEAD_LETTERS = Counter("ledger_decider_dead_letters_total", "dead letters by error code", ["code"])
STORE_CONFLICTS = Counter("ledger_decider_store_conflicts_total", "conditional appends lost to another writer")
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
    SNAPSHOTS.inc(report.snapshots)
    for code, n in report.diverted.items():
        DIVERTED.labels(code).inc(n)
    TRUNCATED.inc(report.truncated)
    DROPPED.inc(report.dropped)


def record_projector_batch(report, seconds: float) -> None:
    BATCH_SECONDS.labels("projector").observe(seconds)
    BATCH_SIZE.labels("projector").observe(report.messages)
    PROJECTED.labels("applied").inc(report.applied)
    PROJECTED.labels("duplicate").inc(report.duplicates)
    PROJECTED.labels("gap_filled").inc(report.gap_entries)
    PROJECTED.labels("undecodable").inc(report.undecodable)
