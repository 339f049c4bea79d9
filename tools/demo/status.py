"""The live status of a running pipeline: a worker's Prometheus counters plus the consumer lag.

Right after `ledger stack up` (or `reset`) Kafka answers some requests with transient errors (the
group coordinator is still loading: NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS; a topic's
leader not elected yet). None of them is fatal here: the lag reads "waiting for Kafka" and the next
refresh asks again."""
from __future__ import annotations

import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition
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
    """Committed offsets of a consumer group against the partitions' ends (does not join the group)."""

    def __init__(self, bootstrap: str, group: str, topic: str, consumer=None):
        self.topic = topic
        self._consumer = consumer or Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                               "enable.auto.commit": False, "log_level": 0})
        self._partitions: list[TopicPartition] = []
        self.last_error = ""

    def lag(self) -> int | None:
        """Messages behind the end over every partition; None while Kafka cannot tell (the error
        is in ``last_error``)."""
        try:
            if not self._partitions:
                metadata = self._consumer.list_topics(self.topic, timeout=5)
                found = metadata.topics.get(self.topic)
                if found is None or found.error is not None or not found.partitions:
                    raise LookupError(f"topic {self.topic} has no partitions yet")
                self._partitions = [TopicPartition(self.topic, p) for p in found.partitions]
            committed = self._consumer.committed(self._partitions, timeout=5)
            total = 0
            for tp in committed:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=5)
                position = tp.offset if tp.offset >= 0 else low
                total += max(0, high - position)
        except (KafkaException, LookupError) as exc:
            error = exc.args[0] if exc.args else exc
            self.last_error = error.name() if hasattr(error, "name") else str(error)
            return None
        self.last_error = ""
        return total

    def close(self) -> None:
        self._consumer.close()


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
    except OSError:  # the worker is still starting (connection refused) or busy (timeout)
        events, rejections = Counter(), Counter()
    lag = lag_reader.lag()
    return Snapshot(time.monotonic(), events, rejections, lag, lag_reader.last_error)
