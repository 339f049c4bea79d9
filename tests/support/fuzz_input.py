"""Hostile input for the fuzz test (tests/e2e/test_fuzz.py): a valid random history with hostile
messages interleaved, every message a function of the seed (and of ``now``, the message timestamp
most messages carry), each hostile one with the dead letter code it must get.

The code is known by construction where the bytes make it certain (a cut message is `truncated`,
a field over its limit `field_too_long`, ...). Where it is not (random bytes after a DownloadEvent
header, a valid message with bytes changed), the code is what `decode_input`, run here in the
test's process, says; a draw that it finds valid is drawn again, so every hostile message is a
dead letter. Every constructed code is checked against `decode_input` too (``generate`` raises
on a disagreement): the end-to-end test then checks that the worker, through Kafka, agrees.
"""
from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from dataclasses import dataclass

from app.adapters.avro.codec import HEADER_SIZE, MARKER, default_codec, single_object_header
from app.adapters.avro.mapping import AvroMessageCodec, encode_event
from app.domain.events import DownloadEvent, LicenseAcquired, PlanChanged
from app.domain.validation import INT_MAX, LONG_MAX, LONG_MIN, MalformedEvent
from app.service.decider import DEFAULT_MAX_FUTURE_SKEW_MS, decode_input
from app.service.ports import DecodeError, InputMessage
from tests.support.domain_builders import DAY, HOUR, T0, acquire, event, plan, release, renew
from tests.support.random_history import random_history
from tools.simulate.bad_input import malformed_event, undecodable_bytes

SKEW = DEFAULT_MAX_FUTURE_SKEW_MS
# As large as the upstream publisher's librdkafka can produce (message.max.bytes 1,000,000 with the
# record's framing, key and headers); the topics' own limit is 1,048,588 (see test_oversized_input).
BIG = 999_900
NO_TIMESTAMP = -1  # Kafka's "no timestamp": the skew guard does not check the message
INDEX_HEADER = "fuzz.i"  # every message carries its index: its dead letter passes it on
SPOOFED_HEADERS = (("error.code", b"spoofed"), ("source.offset", b"-1"), ("dlq.truncated", b"true"))

# How many hostile messages of each kind in 10,000 (scaled to the total asked for, but for
# near_limit); "mutated" takes what is left.
CATEGORIES = {
    "random_bytes": 1200,
    "short_header": 200,
    "bad_input": 1000,  # tools/simulate/bad_input.py: undecodable_bytes
    "truncated_avro": 1200,
    "fingerprint_garbage": 1300,  # every schema of the registry, a garbage body
    "unknown_fingerprint": 500,
    "huge_string": 800,
    "malformed": 700,  # tools/simulate/bad_input.py: malformed_event
    "clock_skew": 700,
    "negative_timestamp": 100,
    "no_key": 300,
    "wrong_key": 400,
    "empty_value": 200,
    "near_limit": 6,
    "hostile_headers": 20,
}
_UNDECODABLE_CODES = {"garbage": "bad_marker", "json_text": "bad_marker", "wrong_marker": "bad_marker",
                      "unknown_fingerprint": "unknown_fingerprint", "truncated": "truncated",
                      "wrong_record": "schema_mismatch", "empty": "truncated"}
_MALFORMED_CODES = {"bad_identifier": "bad_identifier", "limit_below_1": "out_of_range",
                    "unknown_reason": "unknown_reason"}
ORACLE = "oracle"  # the code is what decode_input says
_CODEC = AvroMessageCodec()


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes | None
    timestamp: int  # ms, always explicit
    category: str
    code: str | None  # the dead letter code it must get; None for a good event
    event: DownloadEvent | None = None  # the good event
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class FuzzInput:
    messages: list[Message]

    @property
    def good(self) -> list[DownloadEvent]:
        return [m.event for m in self.messages if m.code is None and m.event is not None]

    @property
    def hostile(self) -> dict[int, Message]:
        return {i: m for i, m in enumerate(self.messages) if m.code is not None}

    def records(self) -> list[tuple]:
        """For Pipeline.publish_raw: (key, value, timestamp, headers + the index header)."""
        return [(m.key, m.value, m.timestamp, m.headers + ((INDEX_HEADER, str(i).encode()),))
                for i, m in enumerate(self.messages)]

    def expected_codes(self) -> Counter[str]:
        return Counter(m.code for m in self.hostile.values())


def dead_letter_code(key: bytes | None, value: bytes | None, timestamp: int) -> str | None:
    """The code the decider gives the message (None: it is decided), as the worker sees it."""
    message = InputMessage("fuzz", 0, 0, key, value, (), None if timestamp == NO_TIMESTAMP else timestamp)
    try:
        decode_input(_CODEC, message, SKEW)
    except (DecodeError, MalformedEvent) as exc:
        return exc.code
    return None


def generate(prefix: str, now: int, seed: int = 10, hostile: int = 10_000, members: int = 24,
             events: int = 2400) -> FuzzInput:
    rng = random.Random(seed)
    good = _good_events(rng, prefix, members, events, now)
    fixed = ("near_limit", "hostile_headers")
    counts = {c: n if c in fixed else n * hostile // 10_000 for c, n in CATEGORIES.items()}
    counts["mutated"] = hostile - sum(counts.values())
    assert counts["mutated"] >= 0, f"the categories hold more than {hostile} messages"
    gen = _Hostile(rng, prefix, [m for m in good if m.category == "good"], now)
    bad = [gen.draw(category, n) for category, count in counts.items() for n in range(count)]
    rng.shuffle(bad)
    for i, m in enumerate(bad):
        if rng.random() < 0.02 and m.category not in fixed:
            bad[i] = dataclasses.replace(m, headers=SPOOFED_HEADERS + (("trace", rng.randbytes(8)),))
    # interleave, keeping the order of the good events
    out: list[Message] = []
    gi = bi = 0
    while gi < len(good) or bi < len(bad):
        if bi < len(bad) and rng.random() * (len(good) - gi + len(bad) - bi) < len(bad) - bi:
            out.append(bad[bi])
            bi += 1
        else:
            out.append(good[gi])
            gi += 1
    return FuzzInput(out)


# --- good events ----------------------------------------------------------------------------


def _good_events(rng: random.Random, prefix: str, members: int, events: int, now: int) -> list[Message]:
    """random_history, some producers and qualities at their limits, and an edge member of extreme
    values merged in (its events in their order)."""
    history = []
    for ev in random_history(prefix, members=members, events=events, seed=rng.randrange(2**32)):
        roll = rng.random()
        if roll < 0.05:  # exactly at the limit of 256 UTF-8 bytes, or empty
            ev = dataclasses.replace(ev, producer=rng.choice(["p" * 256, "é" * 128, "😀" * 64, "", "€" * 85]))
        elif roll < 0.08 and isinstance(ev.payload, LicenseAcquired):
            ev = dataclasses.replace(ev, payload=dataclasses.replace(ev.payload, download_quality="Q" * 32))
        history.append(Message(ev.member_id.encode(), encode_event(ev), now, "good", None, ev))
    edge = _edge_member(f"{prefix}-edge", now)
    at = set(rng.sample(range(len(history) + len(edge)), len(edge)))
    h, e = iter(history), iter(edge)
    return [next(e) if i in at else next(h) for i in range(len(history) + len(edge))]


def _edge_member(member: str, now: int) -> list[Message]:
    """Valid events at the edges: 64-character identifiers, INT_MAX limits, times at the ends of the
    long range, an event exactly at the skew limit, messages without a timestamp."""
    big = {x: x.upper() * 64 for x in "ldts"}
    at_limit = now + SKEW
    evs = [
        (plan(INT_MAX, INT_MAX, INT_MAX, plan_id="P" * 64), T0, now),
        (acquire(big["l"], device=big["d"], title=big["t"], studio=big["s"], expires=LONG_MAX,
                 title_yearly_limit=INT_MAX, studio_concurrent_limit=INT_MAX, max_renewals=INT_MAX,
                 quality="Q" * 32), T0 + 1, now),
        (acquire("e2", expires=LONG_MIN), T0 + 2, now),  # ALREADY_EXPIRED
        (renew(big["l"], expires=LONG_MAX), LONG_MIN, now),  # late, long ago
        (acquire("e3", device="d2", expires=T0 + DAY), -1, now),
        (acquire("e4", device="d3", expires=T0 + DAY), 0, now),
        (release("e3"), T0 + 3, NO_TIMESTAMP),  # not checked
        (acquire("e5", device="d4", expires=at_limit + DAY), at_limit, now),  # exactly at the limit: decided
        (acquire("e6", device="d5", expires=T0 + 30 * DAY), T0 + 4, now),
        (renew("e5", expires=LONG_MAX), at_limit, now),
        (release(big["l"], reason="REVOKED"), LONG_MAX, NO_TIMESTAMP),  # not checked: the clock at its end
        (acquire("e7", device="d6", expires=LONG_MAX), T0 + 5, now),  # ALREADY_EXPIRED at that clock
    ]
    out = []
    for i, (payload, at, ts) in enumerate(evs):
        ev = event(payload, at=at, member=member, event_id=f"{member}-{i}")
        out.append(Message(member.encode(), encode_event(ev), ts, "edge", None, ev))
    return out


# --- hostile messages -------------------------------------------------------------------------


class _Hostile:
    def __init__(self, rng: random.Random, prefix: str, good: list[Message], now: int):
        self.rng = rng
        self.prefix = prefix
        self.good = good
        self.now = now
        self.members = sorted({m.event.member_id for m in good if m.event is not None})
        self.schemas = sorted(default_codec().registry, key=lambda sv: (sv.name, sv.version))
        self.known = {single_object_header(sv.fingerprint)[2:] for sv in self.schemas}
        self.serial = 0
        self.headers: dict[int, tuple] = {}  # the input headers of the message being drawn

    def draw(self, category: str, n: int) -> Message:
        while True:
            key, value, timestamp, code = getattr(self, category)(n)
            found = dead_letter_code(key, value, timestamp)
            if code == ORACLE:
                if found is None:  # decodable, valid and keyed right: not hostile, draw again
                    continue
                code = found
            elif found != code:
                raise AssertionError(f"{category} #{n}: built as a dead letter {code}, decode_input says {found}: "
                                     f"key {key!r:.80}, value {value!r:.200}, timestamp {timestamp}")
            return Message(key, value, timestamp, category, code, headers=self.headers.pop(n, ()))

    # helpers

    def member(self) -> str:
        return self.rng.choice(self.members)

    def template(self) -> DownloadEvent:
        """A good event of the history, event id and all."""
        ev = self.rng.choice(self.good).event
        assert ev is not None
        return ev

    def fresh(self, member: str | None = None, payload=None, at: int | None = None) -> DownloadEvent:
        """A new valid event (an id of its own) of a member."""
        self.serial += 1
        rng = self.rng
        if payload is None:
            payload = acquire(f"h{self.serial}", device=f"d{rng.randint(1, 4)}", title=f"t{rng.randint(1, 8)}",
                              expires=T0 + rng.randint(1, 60) * DAY)
        return event(payload, at=T0 + rng.randint(0, 30 * DAY) if at is None else at,
                     member=member or self.member(), event_id=f"{self.prefix}-h{self.serial}")

    def valid(self) -> DownloadEvent:
        return self.template() if self.rng.random() < 0.5 else self.fresh()

    def any_key(self) -> bytes | None:
        roll = self.rng.random()
        return None if roll < 0.1 else self.rng.randbytes(self.rng.randint(0, 40)) if roll < 0.3 else \
            self.member().encode()

    def size(self, low: int = 1, high: int = 4096) -> int:
        return low + int(self.rng.random() ** 3 * (high - low))  # mostly small

    # categories: each returns (key, value, message timestamp, code)

    def random_bytes(self, n: int):
        data = bytearray(self.rng.randbytes(self.size()))
        if data[0] == MARKER[0]:
            data[0] ^= 0xFF
        return self.any_key(), bytes(data), self.now, "bad_marker"

    def short_header(self, n: int):
        rng = self.rng
        roll = n % 3
        if roll == 0:
            return self.any_key(), MARKER[:1], self.now, "truncated"
        if roll == 1:
            return self.any_key(), MARKER + rng.randbytes(rng.randint(0, HEADER_SIZE - 3)), self.now, "truncated"
        second = rng.choice([b for b in range(256) if b != MARKER[1]])
        return self.any_key(), MARKER[:1] + bytes([second]) + rng.randbytes(rng.randint(0, 40)), self.now, "bad_marker"

    def bad_input(self, n: int):
        template = self.fresh()
        variant, data = undecodable_bytes(self.rng, template)
        return template.member_id.encode(), data, self.now, _UNDECODABLE_CODES[variant]

    def truncated_avro(self, n: int):
        ev = self.valid()
        data = encode_event(ev, version=self.rng.choice([1, 2]))
        return ev.member_id.encode(), data[: self.rng.randrange(len(data))], self.now, "truncated"

    def fingerprint_garbage(self, n: int):
        sv = self.schemas[n % len(self.schemas)]
        body = self.rng.randbytes(self.size(0, 600))
        code = ORACLE if sv.name == "DownloadEvent" else "schema_mismatch"
        return self.member().encode(), single_object_header(sv.fingerprint) + body, self.now, code

    def unknown_fingerprint(self, n: int):
        while (fingerprint := self.rng.randbytes(8)) in self.known:
            pass
        ev = self.valid()
        body = encode_event(ev)[HEADER_SIZE:] if self.rng.random() < 0.5 else self.rng.randbytes(self.size(0, 300))
        return ev.member_id.encode(), MARKER + fingerprint + body, self.now, "unknown_fingerprint"

    def huge_string(self, n: int):
        rng = self.rng

        def length(limit: int) -> int:
            return rng.randint(50_000, 300_000) if rng.random() < 0.02 else rng.randint(limit + 1, limit + 2000)

        ev = self.fresh()
        where = rng.choice(["producer", "producer_utf8", "plan_id", "quality", "event_id", "member_id",
                            "license_id", "device_id", "title_id", "studio_id"])
        key = ev.member_id.encode()
        code = "field_too_long"
        if where == "producer":
            ev = dataclasses.replace(ev, producer="p" * length(256))
        elif where == "producer_utf8":  # few characters, over 256 bytes
            char = rng.choice(["é", "€", "😀"])
            ev = dataclasses.replace(ev, producer=char * (256 // len(char.encode()) + 1 + rng.randint(0, 100)))
        elif where == "plan_id":
            ev = dataclasses.replace(ev, payload=PlanChanged("P" * length(64), 2, 5, None))
        elif where == "quality":
            ev = dataclasses.replace(ev, payload=dataclasses.replace(ev.payload, download_quality="Q" * length(32)))
        else:
            code = "bad_identifier"
            long_id = "x" * length(64)
            if where in ("event_id", "member_id"):
                ev = dataclasses.replace(ev, **{where: long_id})
                if where == "member_id":
                    key = long_id.encode()
            else:
                ev = dataclasses.replace(ev, payload=dataclasses.replace(ev.payload, **{where: long_id}))
        return key, encode_event(ev), self.now, code

    def malformed(self, n: int):
        variant, ev = malformed_event(self.rng, self.fresh())
        return ev.member_id.encode(), encode_event(ev), self.now, _MALFORMED_CODES[variant.split(":")[0]]

    def clock_skew(self, n: int):
        rng = self.rng
        ev = self.valid()
        roll = n % 4
        if roll == 0:  # now, and the event ahead of it
            ts = self.now
            at = ts + rng.choice([SKEW + 1, SKEW + 1000, DAY, 3650 * DAY, rng.randint(SKEW + 1, 10**13)])
        elif roll == 1:  # an extreme occurred_at: the end of the long range, or microseconds
            ts = self.now
            at = rng.choice([LONG_MAX, self.now * 1000, ev.occurred_at * 1000])
        elif roll == 2:  # a message timestamp in the past, the event at its usual time
            ts = rng.choice([1, 1000, HOUR, T0 - 400 * DAY])
            at = ev.occurred_at
        else:  # a message timestamp in the past, the event just over the limit
            ts = rng.choice([1, T0 - DAY, self.now - 30 * DAY, self.now - HOUR])
            at = ts + SKEW + rng.choice([1, 2, 1000, HOUR])
        return ev.member_id.encode(), encode_event(dataclasses.replace(ev, occurred_at=at)), ts, "clock_skew"

    def negative_timestamp(self, n: int):
        ev = self.valid()
        ts = self.rng.choice([-2, -5, -1000, -DAY, -(2**40), -(2**62)])
        return ev.member_id.encode(), encode_event(ev), ts, "clock_skew"

    def no_key(self, n: int):
        return None, encode_event(self.valid()), self.now, "key_mismatch"

    def wrong_key(self, n: int):
        rng = self.rng
        ev = self.valid()
        own = ev.member_id.encode()
        key = rng.choice([
            rng.choice([m for m in self.members if m != ev.member_id]).encode(),  # another member's
            b"", own + b" ", own[:-1], b"\x00" + own, own.upper() + b"X", rng.randbytes(rng.randint(1, 64)),
            own * 2000,  # a key of ~20 KB
        ])
        return key, encode_event(ev), self.now, "key_mismatch"

    def empty_value(self, n: int):
        return self.any_key(), None if n % 2 else b"", self.now, "truncated"

    def near_limit(self, n: int):
        rng = self.rng
        ev = self.fresh()
        key = ev.member_id.encode()
        if n in (0, 1):  # random bytes
            data = bytearray(rng.randbytes(BIG))
            data[0] = 0x7B  # "{"
            return key, bytes(data), self.now, "bad_marker"
        if n == 2:  # a schema-valid event with a huge producer
            return key, _padded(ev, BIG), self.now, "field_too_long"
        if n == 3:  # a DownloadEvent header and a huge garbage body
            sv = default_codec().reader("DownloadEvent")
            return key, single_object_header(sv.fingerprint) + rng.randbytes(BIG - HEADER_SIZE), self.now, ORACLE
        if n == 4:
            return key, MARKER + bytes(8) + rng.randbytes(BIG - HEADER_SIZE), self.now, "unknown_fingerprint"
        return key, _padded(ev, BIG + 50)[:BIG], self.now, "truncated"  # a huge event cut

    def hostile_headers(self, n: int):
        """Bytes that are no message, with input headers that the dead letter must carry or cut."""
        rng = self.rng
        value = bytearray(rng.randbytes(self.size(1, 200)))
        value[0] = 0x00
        variant = n % 4
        if variant == 0:  # a null header value, a non-ASCII name
            self.headers[n] = (("trace", None), ("nämé-ü", b"v"))
        elif variant == 1:  # many headers
            self.headers[n] = tuple((f"h{i}", rng.randbytes(8)) for i in range(1000))
        elif variant == 2:  # a header of 600 KB: with the value, its dead letter is over the limit and cut
            self.headers[n] = (("blob", rng.randbytes(600_000)),)
            value = bytearray(rng.randbytes(399_500))
            value[0] = 0x00
        else:  # null values where the dead letter's own headers go
            self.headers[n] = (("error.kind", None), ("source.topic", None), ("trace", None))
        return self.member().encode(), bytes(value), self.now, "bad_marker"

    def mutated(self, n: int):
        rng = self.rng
        ev = self.valid()
        data = bytearray(encode_event(ev, version=rng.choice([1, 2])))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(HEADER_SIZE, len(data))
            op = rng.random()
            if op < 0.5:
                data[at] ^= 1 << rng.randrange(8)
            elif op < 0.75:
                data[at] = rng.randrange(256)
            elif op < 0.9:
                data[at:at] = rng.randbytes(rng.randint(1, 4))
            else:
                del data[at:at + rng.randint(1, 4)]
        return ev.member_id.encode(), bytes(data), self.now, ORACLE


def _padded(ev: DownloadEvent, size: int) -> bytes:
    """The event with its producer padded so that its encoding is exactly ``size`` bytes."""
    pad = size - len(encode_event(ev))
    while len(data := encode_event(dataclasses.replace(ev, producer="p" * pad))) != size:
        pad += size - len(data)
    return data


def describe(fuzz: FuzzInput) -> str:
    hostile = fuzz.hostile
    sizes = sum(len(m.value or b"") for m in fuzz.messages)
    return json.dumps({
        "messages": len(fuzz.messages), "hostile": len(hostile), "good": len(fuzz.good),
        "bytes": sizes, "categories": dict(Counter(m.category for m in hostile.values())),
    })
