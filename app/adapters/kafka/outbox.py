"""The decider's Outbox on Kafka: ledger entries, rejections and dead letters as Avro records.

Ledger entries and rejections are keyed by member_id; a dead letter keeps the original key and
value bytes, with headers naming the error and where the message came from.

Every record is sized before it is produced (``record_size``, what librdkafka checks against the
producer's ``message.max.bytes``, plus ``SIZE_MARGIN_BYTES``), because a record that cannot be
produced must never fail its batch for ever:

- a dead letter that does not fit carries a prefix of the original value that fits, and the headers
  ``dlq.truncated: true``, ``dlq.original_size`` (bytes) and ``dlq.original_sha256`` (hex); when even
  that does not fit, the input's own headers are dropped (``dlq.headers_dropped``: how many), then
  the key is cut (``dlq.key_truncated``, ``dlq.original_key_size``, ``dlq.original_key_sha256``);
- a ledger entry or rejection that does not fit becomes a dead letter of its input message
  (``error.kind: unpublishable``, ``error.code: output_too_large``);
- a record the cluster refuses for a permanent reason (``UnpublishableRecords``) is replaced: a
  ledger entry or rejection by a dead letter of its input (code ``unpublishable``), a dead letter by
  a headers-only one (null value, code ``unpublishable``, ``dlq.original_code``); what cannot be
  published even so is dropped and logged with its source (topic, partition, offset).
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from app.adapters.avro.mapping import encode_event, encode_ledger_entry, encode_rejection
from app.adapters.kafka.producer import BatchProducer, OutRecord, RecordFailure, UnpublishableRecords, record_size
from app.domain.history import ACCEPTED, Source, StoredDecision
from app.service.ports import DeadLetter, Headers, InputMessage, PublishReport

log = logging.getLogger(__name__)

DETAIL_HEADER_BYTES = 2000
SIZE_MARGIN_BYTES = 512  # below the producer's limit, in case librdkafka's framing grows
HEADERS_ONLY_KEY_BYTES = 256  # a headers-only dead letter keeps a key up to this size
UNPUBLISHABLE = "unpublishable"
OUTPUT_TOO_LARGE = "output_too_large"
OWN_HEADER_PREFIXES = ("error.", "source.", "dlq.")  # an input's headers with these are not passed on
SOURCE_TIMESTAMP_HEADER = "source.timestamp"  # on ledger entries and rejections: the input message's timestamp (ms)
TRUNCATED_NOTE = " [truncated to fit the producer's limit: see the dlq.* headers]"


@dataclass(frozen=True)
class OutputTopics:
    ledger: str
    rejections: str
    dlq: str


@dataclass
class _Pending:
    """One output on its way: the record to produce now and what it stands for."""

    record: OutRecord
    decision: tuple[str, StoredDecision] | None = None  # the record is this decision's ledger entry/rejection
    dead_letter: DeadLetter | None = None  # the record is (a version of) this dead letter
    extra: tuple[tuple[str, bytes], ...] = ()  # headers every version of the dead letter carries
    diverted: bool = False  # counted already as an output published as a dead letter
    headers_only: bool = False


class KafkaOutbox:
    def __init__(self, producer: BatchProducer, topics: OutputTopics):
        self.producer = producer
        self.topics = topics

    @property
    def max_record_bytes(self) -> int:
        return self.producer.max_message_bytes - SIZE_MARGIN_BYTES

    def fits(self, record: OutRecord) -> bool:
        return record_size(record) <= self.max_record_bytes

    async def publish(self, decisions: list[tuple[str, StoredDecision]], dead_letters: list[DeadLetter],
                      inputs: Mapping[Source, InputMessage] | None = None,
                      carry: Mapping[Source, Headers] | None = None) -> PublishReport:
        """Publish every output, each in a form that fits; returns what had to be changed.

        Careful: ``decisions`` are already durable in the event store when they get here. A ledger
        entry or rejection published as a dead letter instead (``output_too_large``, ``unpublishable``;
        counted in ``PublishReport.diverted`` and logged) is missing from its topic but not from the
        member's state: the projector fills the gap from the event store when the member's next
        ledger entry arrives, and a replay from the event store as well; a consumer of the
        rejections topic never sees that rejection. Raises PublishError on a transient failure
        (the caller retries the batch; outputs already acknowledged are published again)."""
        report = PublishReport()
        inputs = inputs or {}
        carry = carry or {}
        pending = [self._decision_output(m, d, inputs, carry, report) for m, d in decisions]
        pending += [self._dead_letter_output(dl, report) for dl in dead_letters]
        while pending:
            try:
                await self.producer.publish([p.record for p in pending])
                break
            except UnpublishableRecords as exc:  # everything else is acknowledged: replace only these
                pending = [nxt for f in exc.failures
                           if (nxt := self._instead(pending[f.index], f, inputs, report)) is not None]
        return report

    # --- ledger entries and rejections ----------------------------------------------------

    def decision_record(self, member_id: str, d: StoredDecision, headers: Headers = ()) -> OutRecord:
        key = member_id.encode()
        if d.kind == ACCEPTED:
            return OutRecord(self.topics.ledger, key, encode_ledger_entry(d.recorded, d.source), headers)
        return OutRecord(self.topics.rejections, key,
                         encode_rejection(d.event, d.reason or "", d.detail or "", d.clock, d.source), headers)

    def _decision_output(self, member_id: str, d: StoredDecision, inputs, carry,
                         report: PublishReport) -> _Pending:
        record = self.decision_record(member_id, d, _carried(d.source, inputs, carry))
        if self.fits(record):
            return _Pending(record, decision=(member_id, d))
        why = (f"the {_what(d)} of event {d.event.event_id} is {record_size(record)} bytes, over the "
               f"producer's limit of {self.max_record_bytes}")
        return self._divert(member_id, d, record.topic, OUTPUT_TOO_LARGE, why, inputs, report)

    def _divert(self, member_id: str, d: StoredDecision, topic: str, code: str, why: str, inputs,
                report: PublishReport) -> _Pending:
        """The dead letter of a decision's input, instead of the decision's own record."""
        message, extra = self._input_of(member_id, d, inputs)
        detail = (f"{why}: the decision (member {member_id}, seq {d.seq}, {d.reason or d.kind}) is stored in "
                  f"the event store but is not on {topic}")
        report.diverted[code] += 1
        log.error("%s[%d]@%d: %s", d.source.topic, d.source.partition, d.source.offset, detail)
        pending = self._dead_letter_output(DeadLetter(message, UNPUBLISHABLE, code, detail), report, extra)
        pending.diverted = True
        return pending

    @staticmethod
    def _input_of(member_id: str, d: StoredDecision, inputs) -> tuple[InputMessage, tuple]:
        """The input message of a decision; re-encoded from the event when it is not in this batch
        (a duplicate's stored outcome, published again, comes from an earlier offset)."""
        message = inputs.get(d.source)
        if message is not None:
            return message, ()
        s = d.source
        return (InputMessage(s.topic, s.partition, s.offset, member_id.encode(), encode_event(d.event)),
                (("dlq.reencoded", b"true"),))

    # --- dead letters ---------------------------------------------------------------------

    def dead_letter_record(self, d: DeadLetter, extra: tuple = ()) -> tuple[OutRecord, bool]:
        """The dead letter as it is when it fits, else cut to fit; returns (record, truncated)."""
        m = d.message
        passed_on = tuple((k, v) for k, v in m.headers if not k.startswith(OWN_HEADER_PREFIXES))
        record = OutRecord(self.topics.dlq, m.key, m.value,
                           self._error_headers(d.kind, d.code, d.detail, m) + extra + passed_on)
        if self.fits(record):
            return record, False
        return self._truncated(d, extra, passed_on), True

    def _dead_letter_output(self, d: DeadLetter, report: PublishReport, extra: tuple = ()) -> _Pending:
        record, truncated = self.dead_letter_record(d, extra)
        if truncated:
            report.truncated += 1
        return _Pending(record, dead_letter=d, extra=extra)

    def _truncated(self, d: DeadLetter, extra: tuple, passed_on: tuple) -> OutRecord:
        m = d.message
        detail = d.detail[:DETAIL_HEADER_BYTES - len(TRUNCATED_NOTE)] + TRUNCATED_NOTE
        headers = self._error_headers(d.kind, d.code, detail, m) + extra + (("dlq.truncated", b"true"),)
        headers += _digest("dlq.original", m.value)
        key = m.key

        def room(key: bytes | None, headers: tuple) -> int:
            return self.max_record_bytes - record_size(OutRecord(self.topics.dlq, key, b"", headers))

        if passed_on and room(key, headers + passed_on) >= 0:
            headers += passed_on
        elif passed_on:
            headers += (("dlq.headers_dropped", str(len(passed_on)).encode()),)
        if key is not None and room(key, headers) < 0:
            headers += (("dlq.key_truncated", b"true"),) + _digest("dlq.original_key", key)
            key = key[:max(0, room(b"", headers))]
        value = None if m.value is None else m.value[:max(0, room(key, headers))]
        return OutRecord(self.topics.dlq, key, value, headers)

    def _headers_only(self, d: DeadLetter, why: str, extra: tuple) -> OutRecord:
        """The last form of a dead letter: no value, a small key, the error and the original's digest."""
        m = d.message
        key = m.key if m.key is None or len(m.key) <= HEADERS_ONLY_KEY_BYTES else None
        detail = f"{why}; it was a dead letter {d.kind}/{d.code}: {d.detail}"
        headers = (self._error_headers(UNPUBLISHABLE, UNPUBLISHABLE, detail, m) + extra
                   + (("dlq.original_code", d.code.encode()), ("dlq.truncated", b"true"))
                   + _digest("dlq.original", m.value))
        if key is not m.key:
            headers += (("dlq.key_truncated", b"true"),) + _digest("dlq.original_key", m.key)
        return OutRecord(self.topics.dlq, key, None, headers)

    @staticmethod
    def _error_headers(kind: str, code: str, detail: str, m: InputMessage) -> tuple[tuple[str, bytes], ...]:
        headers = (("error.kind", kind.encode()), ("error.code", code.encode()),
                   ("error.detail", detail.encode()[:DETAIL_HEADER_BYTES]),
                   ("source.topic", m.topic.encode()), ("source.partition", str(m.partition).encode()),
                   ("source.offset", str(m.offset).encode()))
        if m.timestamp is not None:  # `ledger dlq redrive` republishes with the original timestamp
            headers += (("source.timestamp", str(m.timestamp).encode()),)
        return headers

    # --- what the cluster refused ---------------------------------------------------------

    def _instead(self, p: _Pending, failure: RecordFailure, inputs, report: PublishReport) -> _Pending | None:
        """The next, smaller form of an output the cluster refused for good; None when none is left."""
        if p.decision is not None:
            member_id, d = p.decision
            why = f"the cluster refused the {_what(d)} of event {d.event.event_id} ({failure.describe()})"
            return self._divert(member_id, d, p.record.topic, UNPUBLISHABLE, why, inputs, report)
        d = p.dead_letter
        m = d.message
        if not p.headers_only:
            why = f"the cluster refused the dead letter ({failure.describe()})"
            log.error("%s[%d]@%d: %s; publishing it headers only", m.topic, m.partition, m.offset, why)
            if not p.diverted:
                report.diverted[UNPUBLISHABLE] += 1
            return _Pending(self._headers_only(d, why, p.extra), dead_letter=d, extra=p.extra,
                            diverted=True, headers_only=True)
        report.dropped += 1
        log.error("%s[%d]@%d: dropped: even its headers-only dead letter was refused (%s); it was %s/%s: %s",
                  m.topic, m.partition, m.offset, failure.describe(), d.kind, d.code, d.detail[:500])
        return None


def _carried(source: Source, inputs: Mapping[Source, InputMessage], carry: Mapping[Source, Headers]) -> Headers:
    """The headers a decision's record carries when its input is in the batch (a republished
    duplicate's input is an earlier message): the input's Kafka timestamp (the projector's
    publish-to-view latency) and what the caller carries on (the trace context)."""
    message = inputs.get(source)
    if message is None:
        return ()
    stamped: Headers = ()
    if message.timestamp is not None:
        stamped = ((SOURCE_TIMESTAMP_HEADER, str(message.timestamp).encode()),)
    return stamped + carry.get(source, ())


def _what(d: StoredDecision) -> str:
    return "ledger entry" if d.kind == ACCEPTED else "rejection"


def _digest(prefix: str, data: bytes | None) -> tuple[tuple[str, bytes], ...]:
    if data is None:
        return ()
    return ((f"{prefix}_size", str(len(data)).encode()),
            (f"{prefix}_sha256", hashlib.sha256(data).hexdigest().encode()))
