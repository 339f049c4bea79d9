"""The decider's Outbox on Kafka: ledger entries, rejections and dead letters as Avro records.

Ledger entries and rejections are keyed by member_id; a dead letter keeps the original key and
value bytes, with headers naming the error and where the message came from.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.adapters.avro.mapping import encode_ledger_entry, encode_rejection
from app.adapters.kafka.producer import BatchProducer, OutRecord
from app.domain.history import ACCEPTED, StoredDecision
from app.service.ports import DeadLetter

DETAIL_HEADER_BYTES = 2000


@dataclass(frozen=True)
class OutputTopics:
    ledger: str
    rejections: str
    dlq: str


class KafkaOutbox:
    def __init__(self, producer: BatchProducer, topics: OutputTopics):
        self.producer = producer
        self.topics = topics

    async def publish(self, decisions: list[tuple[str, StoredDecision]], dead_letters: list[DeadLetter]) -> None:
        records = [self.decision_record(m, d) for m, d in decisions]
        records += [self.dead_letter_record(d) for d in dead_letters]
        await self.producer.publish(records)

    def decision_record(self, member_id: str, d: StoredDecision) -> OutRecord:
        key = member_id.encode()
        if d.kind == ACCEPTED:
            return OutRecord(self.topics.ledger, key, encode_ledger_entry(d.recorded, d.source))
        return OutRecord(self.topics.rejections, key,
                         encode_rejection(d.event, d.reason or "", d.detail or "", d.clock, d.source))

    def dead_letter_record(self, d: DeadLetter) -> OutRecord:
        m = d.message
        return OutRecord(self.topics.dlq, m.key, m.value, (
            ("error.kind", d.kind.encode()), ("error.code", d.code.encode()),
            ("error.detail", d.detail.encode()[:DETAIL_HEADER_BYTES]),
            ("source.topic", m.topic.encode()), ("source.partition", str(m.partition).encode()),
            ("source.offset", str(m.offset).encode()),
        ) + tuple((k, v) for k, v in m.headers if not k.startswith(("error.", "source."))))
