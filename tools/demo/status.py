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
    lag: int = 0

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

    def __init__(self, settings, group: str):
        from app import bootstrap

        self.group = group
        self.topics = {settings.events_topic: "decider"}
        self._lag = bootstrap.consumer_lag(settings)
        self._last = 0

    def lag(self) -> int:
        from app.adapters.kafka.lag import LagError

        try:
            self._last = self._lag.group_lag(self.group, self.topics).total()
        except LagError:
            pass  # the status line keeps the last value while the cluster does not answer
        return self._last

    def close(self) -> None:
        self._lag.close()


def status_line(now: Snapshot, before: Snapshot | None) -> str:
    rate = 0.0
    if before is not None and now.at > before.at:
        rate = (now.total - before.total) / (now.at - before.at)
    top = ", ".join(f"{reason} {n}" for reason, n in now.rejections.most_common(4)) or "none"
    return (f"{rate:7.0f} ev/s | accepted {now.events['accepted']} | rejected {now.events['rejected']} ({top}) | "
            f"duplicates {now.events['duplicate']} | dead letters {now.events['dead_letter']} | lag {now.lag}")


def take(metrics_url: str, lag_reader: LagReader) -> Snapshot:
    try:
        events, rejections = scrape(metrics_url)
    except OSError:
        events, rejections = Counter(), Counter()
    return Snapshot(time.monotonic(), events, rejections, lag_reader.lag())
