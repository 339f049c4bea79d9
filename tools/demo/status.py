"""The live status of a running pipeline: a worker's Prometheus counters plus the consumer lag."""
from __future__ import annotations

import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Snapshot:
    at: float
    events: Counter = field(default_factory=Counter)  # by outcome
    rejections: Counter = field(default_factory=Counter)  # by reason
    lag: int | None = 0  # None: Kafka did not answer (yet)
    lag_error: str = ""

    @property
    def total(self) -> int:
        return sum(self.events.values())


def scrape(metrics_url: str) -> tuple[Counter, Counter]:
    with urllib.request.urlopen(metrics_url, timeout=2) as response:
        text = response.read().decode()
    events, rejections = Counter(), Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ledger_decider_events_total":
                events[sample.labels["outcome"]] += int(sample.value)
            elif sample.name == "ledger_decider_rejections_total":
                rejections[sample.labels["reason"]] += int(sample.value)
    return events, rejections


class LagReader:
    """The decider's lag (messages) of a worker group, read like `ledger status` reads it (the
    composition root's ConsumerLag: the group is never joined)."""

    def __init__(self, settings, group: str, consumer_lag=None):
        """``consumer_lag``: the composition root's ConsumerLag unless given (tests)."""
        if consumer_lag is None:
            from app import bootstrap

            consumer_lag = bootstrap.consumer_lag(settings)
        self.group = group
        self.topics = {settings.events_topic: "decider"}
        self._lag = consumer_lag
        self.last_error = ""

    def lag(self) -> int | None:
        """Messages behind the end; None while Kafka cannot tell (right after `ledger stack up`
        or `reset` the group coordinator is still loading: NOT_COORDINATOR), with the reason in
        ``last_error``. The next refresh asks again."""
        from app.adapters.kafka.lag import LagError

        try:
            total = self._lag.group_lag(self.group, self.topics).total()
        except LagError as exc:
            self.last_error = str(exc)
            return None
        self.last_error = ""
        return total

    def close(self) -> None:
        self._lag.close()


def status_line(now: Snapshot, before: Snapshot | None) -> str:
    rate = 0.0
    if before is not None and now.at > before.at:
        rate = (now.total - before.total) / (now.at - before.at)
    top = ", ".join(f"{reason} {n}" for reason, n in now.rejections.most_common(4)) or "none"
    lag = now.lag if now.lag is not None else f"waiting for Kafka ({now.lag_error or 'no answer'})"
    return (f"{rate:7.0f} ev/s | accepted {now.events['accepted']} | rejected {now.events['rejected']} ({top}) | "
            f"duplicates {now.events['duplicate']} | dead letters {now.events['dead_letter']} | lag {lag}")


def take(metrics_url: str, lag_reader: LagReader) -> Snapshot:
    try:
        events, rejections = scrape(metrics_url)
    except OSError:
        events, rejections = Counter(), Counter()
    lag = lag_reader.lag()
    return Snapshot(time.monotonic(), events, rejections, lag, lag_reader.last_error)
