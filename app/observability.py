"""Prometheus metrics of the workers (served by `ledger worker` on LEDGER_METRICS_PORT)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
