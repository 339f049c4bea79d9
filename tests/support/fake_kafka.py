"""A stand-in for confluent_kafka.Producer behind the real BatchProducer.

It enforces ``message.max.bytes`` at ``produce()`` the way librdkafka does (raising
KafkaException(MSG_SIZE_TOO_LARGE) for a record whose wire size is over the limit; the formula is
checked against the real librdkafka in tests/unit/test_outbox.py), and lets a test script what the
"broker" answers: a per-topic size limit that fails the whole batch of a topic like a real broker
does, errors raised by ``produce()``, and delivery errors.

Install it with ``install(monkeypatch)``: BatchProducer then builds FakeProducers instead of
connecting anywhere.
"""
from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

LIBRDKAFKA_DEFAULT_MAX = 1_000_000


def _varint(n: int) -> int:
    size = 1
    n = (n << 1) ^ (n >> 63)  # zigzag
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def wire_size(key, value, headers) -> int:
    """What librdkafka counts against message.max.bytes: 36 bytes of worst-case record framing,
    key, value and each header (varint lengths plus bytes)."""
    size = 36 + len(key or b"") + len(value or b"")
    for k, v in headers or ():
        kb = k.encode()
        size += _varint(len(kb)) + len(kb) + _varint(len(v or b"")) + len(v or b"")
    return size


class Broker:
    """What the fake cluster answers, shared by every FakeProducer of a test."""

    def __init__(self):
        self.topic_max_bytes: dict[str, int] = {}  # a record over it fails its topic's whole batch
        self.produce_errors: list[KafkaError] = []  # raised by the next produce() calls, in order
        self.delivery_errors: list[KafkaError] = []  # reported for the next deliveries, in order
        self.refuse_topics: dict[str, KafkaError] = {}  # every delivery to the topic fails with it
        self.log: list[tuple[str, bytes | None, bytes | None, tuple]] = []  # acknowledged records
        self.producers: list[FakeProducer] = []

    def on(self, topic: str):
        return [r for r in self.log if r[0] == topic]


class FakeProducer:
    broker: Broker  # set by install()

    def __init__(self, config: dict):
        self.config = dict(config)
        self.limit = int(config.get("message.max.bytes", LIBRDKAFKA_DEFAULT_MAX))
        self.queue: list[tuple] = []
        self.purged = False
        self.broker.producers.append(self)

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None, **_):
        if self.broker.produce_errors:
            raise KafkaException(self.broker.produce_errors.pop(0))
        if wire_size(key, value, headers) > self.limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.queue.append((topic, key, value, tuple(headers or ()), on_delivery))

    def poll(self, timeout=None):
        return self.flush(timeout)

    def flush(self, timeout=None):
        queue, self.queue = self.queue, []
        too_large = {t for t, k, v, h, _ in queue
                     if t in self.broker.topic_max_bytes and wire_size(k, v, h) > self.broker.topic_max_bytes[t]}
        for topic, key, value, headers, cb in queue:
            if topic in too_large:
                err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large")
            elif topic in self.broker.refuse_topics:
                err = self.broker.refuse_topics[topic]
            elif self.broker.delivery_errors:
                err = self.broker.delivery_errors.pop(0)
            else:
                err = None
                self.broker.log.append((topic, key, value, headers))
            if cb is not None:
                cb(err, None)
        return 0

    def purge(self, *args, **kwargs):
        self.purged = True
        self.queue = []


def install(monkeypatch) -> Broker:
    import app.adapters.kafka.producer as producer_module

    broker = Broker()
    fake = type("FakeProducer", (FakeProducer,), {"broker": broker})
    monkeypatch.setattr(producer_module, "Producer", fake)
    return broker
