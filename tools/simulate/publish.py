"""Publish a workload to Kafka with `EventPublisher`, at a target rate or as fast as possible.

Well-formed events go through `EventPublisher.record` (Avro single-object, keyed by member_id).
Malformed events are Avro-encoded as they are and undecodable items sent as their raw bytes, both
keyed by the member, so the pipeline's dead-letter path sees exactly what a broken producer sends.

Records go out in chunks; each chunk is acknowledged (acks=all) before the next but one is sent, so
encoding the next chunk overlaps with waiting for the previous one. With a rate, a token bucket
sizes the chunks (what it allows at that moment); the rate reported is the measured one, up to
the last acknowledgement.
"""
from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from app.adapters.avro.mapping import encode_event
from app.adapters.kafka.connection import KafkaConnection
from app.adapters.kafka.producer import OutRecord, PublishError
from app.adapters.kafka.publisher import EventPublisher
from tools.simulate.workload import EVENT_KINDS, Item, ItemKind

MAX_CHUNK = 5_000
BURST_S = 1.0  # with a rate: a stall of up to this long is caught up afterwards
METADATA_TIMEOUT_S = 5.0
DELIVERY_TIMEOUT_MS = 30_000  # a record not acknowledged by then fails the publish

__all__ = ["PublishError", "PublishStats", "SimulateError", "TokenBucket", "check_topic", "publish", "to_record"]


class SimulateError(Exception):
    """Kafka cannot be reached or the topic does not exist."""


@dataclass
class PublishStats:
    topic: str
    counts: dict[str, int] = field(default_factory=dict)  # items by ItemKind value
    elapsed_s: float = 0.0
    target_rate: float | None = None

    @property
    def items(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        """Items acknowledged per second, measured."""
        return self.items / self.elapsed_s if self.elapsed_s > 0 else 0.0


class TokenBucket:
    """Tokens accrue at `rate` per second up to `burst`, starting empty. `take(n)` blocks until n
    are available; `take_up_to(limit)` until one is, then takes as many as there are (up to limit)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = 0.0  # start empty: the first chunk waits its share, so short runs keep the rate
        self._last = clock()

    def take_up_to(self, limit: int) -> int:
        """Blocks until at least one token is available, then takes all available, up to `limit`."""
        self._refill()
        if self._tokens < 1 - 1e-6:
            self._sleep((1 - self._tokens) / self.rate)
            self._refill()
        n = max(1, min(limit, int(self._tokens + 1e-6)))
        self._tokens = max(0.0, self._tokens - n)
        return n

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self, n: int) -> None:
        if n > self.burst:
            raise ValueError(f"cannot take {n} tokens at once from a bucket of {self.burst:g}")
        while True:
            self._refill()
            if self._tokens >= n - 1e-6:  # not exactly n: float rounding would make us sleep 0 s forever
                self._tokens = max(0.0, self._tokens - n)
                return
            self._sleep((n - self._tokens) / self.rate)


def check_topic(connection: KafkaConnection, topic: str, timeout: float = METADATA_TIMEOUT_S) -> int:
    """The topic's partition count; SimulateError when Kafka does not answer or the topic is missing."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    # log_level 0: librdkafka would print a line per failed connection attempt to stderr.
    admin = AdminClient({**connection.librdkafka(), "log_level": 0})
    try:
        # All topics, not list_topics(topic=...): asking for one topic auto-creates it on brokers
        # with auto.create.topics.enable (the Kafka default).
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise SimulateError(f"Kafka at {connection.describe()} did not answer within {timeout:g}s: {exc.args[0].str()}") from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise SimulateError(f"topic {topic} does not exist on {connection.bootstrap} (create it, e.g. `ledger topics apply`)")
    return len(found.partitions)


def to_record(publisher: EventPublisher, item: Item) -> OutRecord:
    if item.kind in EVENT_KINDS:
        return publisher.record(item.event)
    if item.kind is ItemKind.MALFORMED:
        return OutRecord(publisher.topic, item.key, encode_event(item.event))
    return OutRecord(publisher.topic, item.key, item.raw)


def publish(
    items: Iterable[Item],
    connection: KafkaConnection,
    topic: str,
    rate: float | None = None,
    *,
    on_progress: Callable[[int], None] | None = None,
    check: bool = True,
    **producer_overrides,
) -> PublishStats:
    """Publish every item; returns once all are acknowledged. `rate`: items per second (None: as
    fast as possible). `on_progress(n)` is called with the number of items acknowledged so far.
    Raises SimulateError (Kafka unreachable, no such topic) or PublishError (delivery failed)."""
    if rate is not None and rate <= 0:
        raise ValueError("rate must be > 0")
    if check:
        check_topic(connection, topic)
    bucket = TokenBucket(rate, burst=max(1.0, rate * BURST_S)) if rate is not None else None
    publisher = EventPublisher(connection, topic, **{"message.timeout.ms": DELIVERY_TIMEOUT_MS, **producer_overrides})
    stats = PublishStats(topic, target_rate=rate)
    counts: Counter[str] = Counter()
    acknowledged = 0
    pending: Future | None = None

    def wait_pending() -> None:
        nonlocal pending, acknowledged
        if pending is not None:
            acknowledged += pending.result()
            pending = None
            if on_progress is not None:
                on_progress(acknowledged)

    def send(records: list[OutRecord]) -> int:
        publisher.publish_raw(records)
        return len(records)

    remaining = iter(items)
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulate-publish") as pool:
            try:
                while True:
                    # With a rate, a chunk is what the bucket allows now: when acknowledgements are
                    # slow, tokens pile up meanwhile and the next chunk is larger, so the rate holds.
                    size = MAX_CHUNK if bucket is None else bucket.take_up_to(MAX_CHUNK)
                    batch = []
                    for item in itertools.islice(remaining, size):
                        batch.append(to_record(publisher, item))
                        counts[item.kind.value] += 1
                    if not batch:
                        break
                    wait_pending()
                    pending = pool.submit(send, batch)
                wait_pending()
            finally:
                if pending is not None:  # an error above: let the chunk in flight finish
                    pending.exception()
    finally:
        publisher.close()
    stats.elapsed_s = time.monotonic() - started
    stats.counts = {kind.value: counts[kind.value] for kind in ItemKind}
    return stats
