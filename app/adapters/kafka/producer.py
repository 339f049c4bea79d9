"""An idempotent confluent-kafka producer whose batches can be awaited from asyncio.

Three kinds of failure, three answers:

- **permanent**, for one record: librdkafka refuses it in ``produce()`` (over ``message.max.bytes``),
  or the broker answers MSG_SIZE_TOO_LARGE, INVALID_RECORD or RECORD_LIST_TOO_LARGE. Sending the same
  bytes again can never work, so it must not be retried: ``produce_all`` raises
  ``UnpublishableRecords`` naming those records once every other record is acknowledged, and the
  caller decides what to publish instead (the outbox publishes a dead letter).
- **transient** (timeouts, brokers restarting, not enough replicas, an unknown topic): ``PublishError``;
  the caller retries the whole batch.
- **fatal** (``KafkaError.fatal()``: the idempotent producer lost its guarantees, e.g. fenced or an
  out-of-order sequence): the underlying ``confluent_kafka.Producer`` can never produce again, so it
  is replaced by a new one before ``PublishError`` is raised; the caller's retry then works.

A broker refuses a whole batch when one record of it is over the topic's ``max.message.bytes``
(measured on Kafka 4.1: every record produced with it fails with MSG_SIZE_TOO_LARGE), so a record that
failed permanently on delivery gets a second chance on its own before it is declared unpublishable.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Producer

from app.adapters.kafka.connection import KafkaConnection

log = logging.getLogger(__name__)

# A record not acknowledged within MESSAGE_TIMEOUT_MS fails with a delivery report (librdkafka's
# default is 5 minutes): a batch to a cluster that cannot take it fails, and is retried, within this.
MESSAGE_TIMEOUT_MS = 30_000
SOCKET_TIMEOUT_MS = 30_000  # one request to a broker (librdkafka's default is 60 s)
# A flush waits a little longer than the message timeout, so that it returns with every record's
# delivery report: no record of a failed batch stays queued, to be delivered behind its retry.
FLUSH_MARGIN_S = 5.0
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000  # librdkafka's own default for message.max.bytes
RECORD_FRAMING_BYTES = 36  # librdkafka's worst-case framing of one v2 record (varint lengths, attributes)
PERMANENT_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD,
                              KafkaError.RECORD_LIST_TOO_LARGE})


class PublishError(RuntimeError):
    """The batch was not (entirely) acknowledged; publishing it again may work."""


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int | None = None  # the message timestamp (ms); None: the producer's clock at send time
    partition: int | None = None  # None: the producer's partitioner picks one from the key


@dataclass(frozen=True, slots=True)
class RecordFailure:
    index: int  # in the list given to produce_all
    record: OutRecord
    error: KafkaError

    def describe(self) -> str:
        return f"{self.error.name()}: {self.error.str()}"


class UnpublishableRecords(PublishError):
    """Some records can never be produced as they are; every other record of the batch was acknowledged."""

    def __init__(self, failures: list[RecordFailure]):
        super().__init__(f"{len(failures)} record(s) refused for good, first: {failures[0].describe()}")
        self.failures = failures


def _varint_size(n: int) -> int:
    n = (n << 1) ^ (n >> 63)  # zigzag, as Kafka's record format encodes lengths
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def record_size(r: OutRecord) -> int:
    """The size librdkafka checks against ``message.max.bytes`` in ``produce()``: the worst-case record
    framing plus key, value and every header (its varint lengths included). Checked against the
    real librdkafka in tests/unit/test_outbox.py."""
    size = RECORD_FRAMING_BYTES + len(r.key or b"") + len(r.value or b"")
    for name, value in r.headers:
        n = len(name.encode())
        v = len(value or b"")
        size += _varint_size(n) + n + _varint_size(v) + v
    return size


def producer_config(connection: KafkaConnection, **overrides) -> dict:
    return {
        **connection.librdkafka(),
        "enable.idempotence": True,  # implies acks=all and in-order, no-duplicate retries
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "message.max.bytes": DEFAULT_MAX_MESSAGE_BYTES,
        "message.timeout.ms": MESSAGE_TIMEOUT_MS,
        "socket.timeout.ms": SOCKET_TIMEOUT_MS,
        **overrides,
    }


def _kafka_error(exc: KafkaException) -> KafkaError:
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else KafkaError(KafkaError._FAIL, str(exc))


@dataclass
class _Outcome:
    permanent: dict[int, KafkaError] = field(default_factory=dict)
    refused_at_produce: set[int] = field(default_factory=set)  # by librdkafka itself: deterministic
    transient: list[KafkaError] = field(default_factory=list)
    fatal: KafkaError | None = None


class BatchProducer:
    """``publish`` returns once every record of the batch is acknowledged by the cluster, or raises.

    ``max_message_bytes`` (librdkafka's ``message.max.bytes``; also accepted as that override) is the
    largest record, as ``record_size`` counts it, that ``produce()`` accepts."""

    def __init__(self, connection: KafkaConnection, max_message_bytes: int | None = None, **overrides):
        if max_message_bytes is None:
            max_message_bytes = int(overrides.pop("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES))
        else:
            overrides.pop("message.max.bytes", None)
        self.max_message_bytes = max_message_bytes
        self._config = producer_config(connection, **{"message.max.bytes": max_message_bytes, **overrides,
                                                     "error_cb": self._on_error})
        # every record has its delivery report (success or timeout) within this
        self.flush_timeout_s = int(self._config["message.timeout.ms"]) / 1000 + FLUSH_MARGIN_S
        self._fatal: KafkaError | None = None  # reported through error_cb, not yet acted on
        self._lock = threading.Lock()
        self._producer = Producer(self._config)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            log.error("fatal Kafka producer error: %s", err.str())
        else:
            log.debug("Kafka producer error: %s", err.str())

    def _recreate(self, reason: KafkaError) -> None:
        """A producer with a fatal error never produces again: replace it (queued records are lost,
        which is fine: the batch that owned them is reported failed and retried)."""
        old, self._producer = self._producer, Producer(self._config)
        self._fatal = None
        try:
            old.purge()
        except Exception:  # noqa: BLE001 - the old producer is unusable anyway
            log.debug("purging the failed producer failed", exc_info=True)
        log.warning("Kafka producer recreated after a fatal error: %s", reason.str())

    def produce_all(self, records: list[OutRecord]) -> None:
        """Blocking: enqueue and wait for every acknowledgement (call from a thread or a CLI).

        Raises UnpublishableRecords when the only failures are permanent ones (everything else is
        acknowledged), PublishError otherwise."""
        if not records:
            return
        with self._lock:
            if self._fatal is not None:
                self._recreate(self._fatal)
            outcome = self._send(records, range(len(records)))
            if outcome.permanent and not outcome.transient and outcome.fatal is None:
                # a broker fails the whole batch a too-large record travels in: give each record a
                # second chance alone (produce() refusals are deterministic, they stay refused)
                for i in sorted(set(outcome.permanent) - outcome.refused_at_produce):
                    alone = self._send(records, [i])
                    if i in alone.permanent:
                        outcome.permanent[i] = alone.permanent[i]
                    else:
                        del outcome.permanent[i]
                    outcome.transient += alone.transient
                    outcome.fatal = outcome.fatal or alone.fatal
                    if alone.transient or alone.fatal:
                        break
            if outcome.fatal is not None or self._fatal is not None:
                reason = outcome.fatal or self._fatal
                self._recreate(reason)
                raise PublishError(f"fatal producer error ({reason.name()}: {reason.str()}); producer recreated")
            if outcome.transient:
                raise PublishError(f"{len(outcome.transient)} record(s) failed: {outcome.transient[0].str()}")
            if outcome.permanent:
                raise UnpublishableRecords([RecordFailure(i, records[i], err)
                                            for i, err in sorted(outcome.permanent.items())])

    def _send(self, records: list[OutRecord], indexes) -> _Outcome:
        producer = self._producer
        outcome = _Outcome()

        def delivered(i):
            def callback(err, _msg):
                if err is None:
                    return
                if err.fatal():
                    outcome.fatal = outcome.fatal or err
                elif err.code() in PERMANENT_ERRORS:
                    outcome.permanent[i] = err
                else:
                    outcome.transient.append(err)
            return callback

        deadline, queue_full = time.monotonic() + self.flush_timeout_s, False
        for i in indexes:
            r = records[i]
            while True:
                try:
                    producer.produce(r.topic, r.value, r.key, headers=list(r.headers) or None,
                                     timestamp=r.timestamp or 0, on_delivery=delivered(i),  # 0: now
                                     **({} if r.partition is None else {"partition": r.partition}))
                    break
                except BufferError:  # the local queue is full: wait for deliveries (or timeouts) to free it
                    if time.monotonic() > deadline:
                        outcome.transient.append(KafkaError(KafkaError._QUEUE_FULL, "the producer queue stayed full"))
                        queue_full = True
                        break
                    producer.poll(0.05)
                except KafkaException as exc:
                    err = _kafka_error(exc)
                    if err.fatal():
                        outcome.fatal = err
                    elif err.code() in PERMANENT_ERRORS:
                        outcome.permanent[i] = err
                        outcome.refused_at_produce.add(i)
                    else:
                        outcome.transient.append(err)
                    break
            if outcome.fatal is not None or queue_full:
                break
        remaining = producer.flush(self.flush_timeout_s)
        if remaining and outcome.fatal is None:
            outcome.transient.append(KafkaError(
                KafkaError._TIMED_OUT, f"{remaining} record(s) not acknowledged within {self.flush_timeout_s:.0f}s"))
        return outcome

    async def publish(self, records: list[OutRecord]) -> None:
        if records:
            await asyncio.get_running_loop().run_in_executor(None, self.produce_all, records)

    def close(self) -> None:
        self._producer.flush(self.flush_timeout_s)
