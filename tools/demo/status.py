"""The live status of a running pipeline: a worker's Prometheus counters plus the consumer lag."""
from __future__ import annotations

import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition
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
    """Committed offsets of a consumer group against the partitions' ends (does not join the group)."""

    def __init__(self, bootstrap: str, group: str, topic: str):
        self.topic = topic
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        metadata = self._consumer.list_topics(topic, timeout=10)
        self._partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]

    def lag(self) -> int:
        committed = self._consumer.committed(self._partitions, timeout=5)
        total = 0
        for tp in committed:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=5)
            position = tp.offset if tp.offset >= 0 else low
            total += max(0, high - position)
        return total

    def close(self) -> None:
        self._consumer.close()


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
