"""An idempotent confluent-kafka producer whose batches can be awaited from asyncio."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from confluent_kafka import KafkaError, Producer

FLUSH_TIMEOUT_S = 60


class PublishError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int | None = None  # the message timestamp (ms); None: the producer's clock at send time


def producer_config(bootstrap: str, **overrides) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # implies acks=all and in-order, no-duplicate retries
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        **overrides,
    }


class BatchProducer:
    """``publish`` returns once every record of the batch is acknowledged by the cluster, or raises."""

    def __init__(self, bootstrap: str, **overrides):
        self._producer = Producer(producer_config(bootstrap, **overrides))

    def produce_all(self, records: list[OutRecord]) -> None:
        """Blocking: enqueue and wait for every acknowledgement (call from a thread or a CLI)."""
        errors: list[KafkaError] = []

        def delivered(err, _msg):
            if err is not None:
                errors.append(err)

        for r in records:
            while True:
                try:
                    self._producer.produce(r.topic, r.value, r.key, headers=list(r.headers) or None,
                                           timestamp=r.timestamp or 0, on_delivery=delivered)  # 0: now
                    break
                except BufferError:
                    self._producer.poll(0.05)
        remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            raise PublishError(f"{remaining} record(s) not acknowledged within {FLUSH_TIMEOUT_S}s")
        if errors:
            raise PublishError(f"{len(errors)} record(s) failed: {errors[0].str()}")

    async def publish(self, records: list[OutRecord]) -> None:
        if records:
            await asyncio.get_running_loop().run_in_executor(None, self.produce_all, records)

    def close(self) -> None:
        self._producer.flush(FLUSH_TIMEOUT_S)
