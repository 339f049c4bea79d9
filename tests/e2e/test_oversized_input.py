"""A message just under the topic's size limit, in front of a good event on every partition: the
partitions keep flowing (the user's report: the dead letter of a 999,950-byte value could not be
produced, the batch was retried for ever and the partition wedged, on every worker it moved to)."""
from __future__ import annotations

import hashlib
import os
import time
import uuid
import zlib
from collections import Counter
from dataclasses import replace

from confluent_kafka import Consumer, TopicPartition

from app.adapters.avro.mapping import encode_event
from app.bootstrap import kafka_connection
from tests.support.domain_builders import acquire, event
from tests.support.pipeline import PARTITIONS, expected_states

# The topics of the fixture have the broker's default max.message.bytes (1,048,588 on Kafka 4.1); the
# upstream publisher's librdkafka refuses records over message.max.bytes (1,000,000 with its framing),
# so 999,900 bytes is as large as an upstream service can publish here.
BIG = 999_900


def members_per_partition(prefix: str) -> list[str]:
    """One member id per partition of librdkafka's default partitioner (consistent_random: CRC-32 of
    the key modulo the partition count); the test checks the placement on the topic."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < PARTITIONS:
        member = f"{prefix}-{i}"
        found.setdefault(zlib.crc32(member.encode()) % PARTITIONS, member)
        i += 1
    return [found[p] for p in range(PARTITIONS)]


def oversized_event(member: str) -> bytes:
    """A schema-valid LicenseAcquired of exactly BIG bytes, its `producer` padded."""
    ev = event(acquire("huge"), member=member, event_id=f"{member}-huge")
    pad = BIG - len(encode_event(ev))
    while len(data := encode_event(replace(ev, producer=ev.producer + "p" * pad))) != BIG:
        pad += BIG - len(data)
    return data


def test_oversized_messages_become_truncated_dead_letters_and_every_partition_keeps_flowing(pipeline):
    prefix = uuid.uuid4().hex[:6]
    members = members_per_partition(prefix)
    good = [event(acquire("l1"), member=m, event_id=f"{m}-good") for m in members]
    originals = {}
    records = []
    for p, (member, ev) in enumerate(zip(members, good)):
        big = os.urandom(BIG) if p % 2 == 0 else oversized_event(member)  # undecodable / valid but absurd
        originals[hashlib.sha256(big).hexdigest()] = big
        records += [(member.encode(), big), (member.encode(), encode_event(ev))]

    worker = pipeline.start_worker()
    started = time.monotonic()
    pipeline.publish_raw(records)
    published = time.monotonic()
    states, _ = expected_states(good)
    pipeline.wait_for_views(states, timeout=60)
    first = time.monotonic()
    # The good events travel in the same micro-batch as the oversized messages, and the outbox
    # produces ledger entries before dead letters: their views appeared even while that batch was
    # failing for ever. The wedge shows on what comes after, so publish a second good event per member.
    later = [event(acquire("l2", device="d1"), member=m, event_id=f"{m}-later", at=ev.occurred_at + 1)
             for m, ev in zip(members, good)]
    pipeline.publish(later)
    states, _ = expected_states(good + later)
    assert all(s.seq == 2 for s in states.values())
    pipeline.wait_for_views(states, timeout=60)
    print(f"published {len(records)} records ({PARTITIONS * BIG:,} oversized bytes) in {published - started:.1f}s; "
          f"first views {first - started:.1f}s after the worker started, the later ones "
          f"{time.monotonic() - first:.1f}s after those")

    consumer = Consumer({**kafka_connection(pipeline.settings).librdkafka(), "group.id": f"r-{prefix}"})
    try:
        placed = [consumer.get_watermark_offsets(TopicPartition(pipeline.settings.events_topic, p), timeout=10)
                  for p in range(PARTITIONS)]
    finally:
        consumer.close()
    assert placed == [(0, 3)] * PARTITIONS, "an oversized message and two good events per partition"

    dlq = pipeline.dead_letters()
    assert len(dlq) == PARTITIONS
    codes = Counter(dict(m.headers())["error.code"] for m in dlq)
    assert codes == {b"bad_marker": PARTITIONS // 2, b"field_too_long": PARTITIONS // 2}
    for m in dlq:
        h = dict(m.headers())
        original = originals[h["dlq.original_sha256"].decode()]
        assert h["dlq.original_size"] == str(BIG).encode() and h["dlq.truncated"] == b"true"
        assert original.startswith(m.value()) and len(m.value()) < BIG
        assert h["source.offset"] == b"0"
        assert int(h["source.partition"]) == members.index(m.key().decode())
    assert worker.alive
