"""The publisher upstream services use: Avro single-object encoding, keyed by member_id, idempotent."""
from __future__ import annotations

from collections.abc import Iterable

from app.adapters.avro.mapping import encode_event
from app.adapters.kafka.connection import KafkaConnection
from app.adapters.kafka.producer import BatchProducer, OutRecord
from app.domain.events import DownloadEvent


class EventPublisher:
    def __init__(self, connection: KafkaConnection, topic: str, **producer_overrides):
        self.topic = topic
        self._producer = BatchProducer(connection, **producer_overrides)

    def record(self, event: DownloadEvent) -> OutRecord:
        return OutRecord(self.topic, event.member_id.encode(), encode_event(event))

    def publish(self, events: Iterable[DownloadEvent]) -> int:
        """Blocks until every event is acknowledged (acks=all); returns how many were published."""
        records = [self.record(e) for e in events]
        self._producer.produce_all(records)
        return len(records)

    def publish_raw(self, records: list[OutRecord]) -> None:
        self._producer.produce_all(records)

    def close(self) -> None:
        self._producer.close()
