"""The workload generator of `ledger simulate`: deterministic, realistic, and each kind of item is
what it claims to be (checked with the real validation, codec and decider)."""
from __future__ import annotations

import io
import json
import math
import time
from collections import Counter

import pytest

from app.adapters.avro.errors import DecodeError
from app.adapters.avro.mapping import decode_event, encode_event
from app.adapters.json_events import event_from_json
from app.domain.decide import Accepted, Duplicate, Rejected, step
from app.domain.events import LicenseAcquired, LicenseRenewed, PlanChanged
from app.domain.rules import Reason
from app.domain.state import MemberState
from app.domain.validation import MalformedEvent, validate
from app.entrypoints.cli import main as ledger_main
from tools.commands.simulate_cmd import future_skew_warning, parse_start
from tools.simulate import bad_input
from tools.simulate.jsonl import item_line, write_jsonl
from tools.simulate.publish import TokenBucket
from tools.simulate.workload import DAY_MS, DEFAULT_START_MS, EVENT_KINDS, ItemKind, WorkloadConfig, generate

CONFIG = WorkloadConfig(seed=7, members=2_000, events=20_000)


@pytest.fixture(scope="module")
def items():
    return list(generate(CONFIG))


@pytest.fixture(scope="module")
def decided(items):
    """(item, decision) for every well-formed item, decided member by member with the real decider."""
    states: dict[str, MemberState] = {}
    out = []
    for item in items:
        if item.kind not in EVENT_KINDS:
            continue
        event = item.event
        state = states.get(event.member_id) or MemberState.empty(event.member_id)
        decision, states[event.member_id] = step(state, event)
        out.append((item, decision))
    return out


def _outcome(decision) -> str:
    if isinstance(decision, Accepted):
        return "ACCEPTED"
    if isinstance(decision, Duplicate):
        return "DUPLICATE"
    return str(decision.reason)


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_gives_the_same_items(items):
    again = list(generate(CONFIG))
    assert again == items
    assert [item_line(i) for i in again] == [item_line(i) for i in items]
    assert [i.raw for i in again] == [i.raw for i in items]


def test_another_seed_gives_other_items(items):
    other = list(generate(WorkloadConfig(seed=8, members=2_000, events=20_000)))
    assert len(other) == len(items)
    assert [item_line(i) for i in other[:200]] != [item_line(i) for i in items[:200]]
    assert {i.event.event_id for i in other if i.kind in EVENT_KINDS}.isdisjoint(
        {i.event.event_id for i in items if i.kind in EVENT_KINDS})


def test_event_ids_come_from_seed_and_counter(items):
    originals = [i for i in items if i.kind in (ItemKind.GOOD, ItemKind.BREAKING)]
    assert all(i.event.event_id == f"e7-{n}" for n, i in enumerate(items) if i in originals[:50])
    ids = [i.event.event_id for i in originals]
    assert len(ids) == len(set(ids))
    seen: set[str] = set()
    for item in items:
        if item.kind is ItemKind.DUPLICATE:
            assert item.event.event_id in seen  # a re-send of an earlier event
        elif item.kind in (ItemKind.GOOD, ItemKind.BREAKING):
            seen.add(item.event.event_id)


def test_id_prefix_keeps_runs_apart():
    some = list(generate(WorkloadConfig(seed=1, members=50, events=300, id_prefix="run7.")))
    for item in some:
        assert item.member_id.startswith("run7.m")
        if item.kind in EVENT_KINDS:
            assert item.event.event_id.startswith("run7.e1-")


# --- shares and kinds ---------------------------------------------------------------------------


def test_item_count_and_shares_are_as_configured(items):
    assert len(items) == CONFIG.events
    counts = Counter(i.kind for i in items)
    expected = {
        ItemKind.BREAKING: CONFIG.share_limit_breaking,
        ItemKind.DUPLICATE: CONFIG.share_duplicates,
        ItemKind.MALFORMED: CONFIG.share_malformed,
        ItemKind.UNDECODABLE: CONFIG.share_undecodable,
    }
    for kind, share in expected.items():
        mean = share * CONFIG.events
        # five standard deviations of a binomial count, and 10% for the first-event correction
        tolerance = 5 * math.sqrt(mean) + 0.1 * mean
        assert abs(counts[kind] - mean) <= tolerance, (kind, counts[kind], mean)


def test_shares_can_be_turned_off():
    config = WorkloadConfig(seed=3, members=300, events=3_000, share_limit_breaking=0, share_duplicates=0,
                            share_malformed=0, share_undecodable=0)
    assert {i.kind for i in generate(config)} == {ItemKind.GOOD}


def test_good_events_are_valid_and_round_trip_through_the_codec(items):
    for item in items:
        if item.kind in EVENT_KINDS:
            validate(item.event)
            assert decode_event(encode_event(item.event)) == item.event
            assert item.member_id == item.event.member_id


def test_malformed_events_fail_validation_but_still_encode(items):
    malformed = [i for i in items if i.kind is ItemKind.MALFORMED]
    assert malformed
    for item in malformed:
        with pytest.raises(MalformedEvent):
            validate(item.event)
        assert decode_event(encode_event(item.event)) == item.event  # the decider sees it after decoding


def test_every_malformed_variant_fails_validation():
    config = WorkloadConfig(seed=11, members=100, events=3_000, share_malformed=0.5)
    variants = Counter()
    for item in generate(config):
        if item.kind is ItemKind.MALFORMED:
            variants[item.intent.split(":")[0]] += 1
            with pytest.raises(MalformedEvent) as raised:
                validate(item.event)
            assert raised.value.code in {"bad_identifier", "out_of_range", "unknown_reason"}
            encode_event(item.event)
    assert set(variants) == set(bad_input.MALFORMED_VARIANTS)


def test_undecodable_items_fail_decoding(items):
    undecodable = [i for i in items if i.kind is ItemKind.UNDECODABLE]
    assert undecodable
    for item in undecodable:
        assert item.event is None and isinstance(item.raw, bytes)
        with pytest.raises(DecodeError):
            decode_event(item.raw)


def test_every_undecodable_variant_fails_decoding():
    config = WorkloadConfig(seed=12, members=100, events=3_000, share_undecodable=0.5)
    variants, codes = Counter(), Counter()
    for item in generate(config):
        if item.kind is ItemKind.UNDECODABLE:
            variants[item.intent] += 1
            with pytest.raises(DecodeError) as raised:
                decode_event(item.raw)
            codes[raised.value.code] += 1
    assert set(variants) == set(bad_input.UNDECODABLE_VARIANTS)
    assert {"bad_marker", "unknown_fingerprint", "truncated", "schema_mismatch"} <= set(codes)


# --- realism ------------------------------------------------------------------------------------


def test_members_start_with_a_plan_and_plans_mix_device_limits(items):
    first: dict[str, object] = {}
    for item in items:
        if item.kind in (ItemKind.GOOD, ItemKind.BREAKING):
            first.setdefault(item.member_id, item.event.payload)
    assert all(isinstance(payload, PlanChanged) for payload in first.values())
    plans = [i.event.payload for i in items if i.kind is ItemKind.GOOD and isinstance(i.event.payload, PlanChanged)]
    assert {p.device_limit for p in plans} == {1, 2, 4}
    assert any(p.monthly_limit is not None for p in plans) and any(p.monthly_limit is None for p in plans)


def test_event_mix_is_mostly_acquisitions(items):
    good = Counter(type(i.event.payload).__name__ for i in items if i.kind is ItemKind.GOOD)
    assert good.most_common(1)[0][0] == "LicenseAcquired"
    assert good["LicenseAcquired"] > 0.5 * sum(good.values())
    for name in ("LicenseRenewed", "LicenseReleased", "DeviceDeactivated", "PlanChanged"):
        assert good[name] > 0, name
    reasons = {i.event.payload.reason for i in items
               if i.kind is ItemKind.GOOD and type(i.event.payload).__name__ == "LicenseReleased"}
    assert reasons == {"DELETED", "EXPIRED", "REVOKED"}


def test_titles_carry_limits_and_popularity_is_skewed(items):
    acquisitions = [i.event.payload for i in items
                    if i.kind in EVENT_KINDS and isinstance(i.event.payload, LicenseAcquired)]
    assert any(a.title_yearly_limit is not None for a in acquisitions)
    assert any(a.studio_concurrent_limit is not None for a in acquisitions)
    assert any(a.max_renewals is not None for a in acquisitions)
    by_title = Counter(a.title_id for a in acquisitions)
    top = sum(n for _, n in by_title.most_common(CONFIG.titles // 100))  # the top 1% of the catalogue
    assert top / len(acquisitions) > 0.3  # Zipf 1.1 over 5,000 titles: ~0.6; uniform would be 0.01


def test_expiry_is_after_event_time_except_when_meant_to_be_expired(items):
    for item in items:
        payload = item.event.payload if item.kind is ItemKind.GOOD else None
        if isinstance(payload, (LicenseAcquired, LicenseRenewed)):
            assert payload.expires_at > item.event.occurred_at


def test_event_time_moves_forward_per_member_with_a_few_late_events(items):
    clock: dict[str, int] = {}
    late = total = 0
    for item in items:
        if item.kind in (ItemKind.GOOD, ItemKind.BREAKING):
            event = item.event
            total += 1
            if event.occurred_at < clock.get(event.member_id, 0) - 60_000:
                late += 1
            clock[event.member_id] = max(clock.get(event.member_id, 0), event.occurred_at)
    assert 0 < late / total < 0.05
    times = [i.event.occurred_at for i in items if i.kind is ItemKind.GOOD]
    assert min(times) >= DEFAULT_START_MS - 3 * 86_400_000
    assert max(times) <= CONFIG.start_ms + CONFIG.span_ms + 60_000


def test_decider_sees_a_healthy_mix_of_outcomes(items, decided):
    outcomes = Counter(_outcome(d) for _, d in decided)
    assert outcomes["ACCEPTED"] > 0.8 * len(decided)
    assert outcomes["DEVICE_LIMIT"] > 0
    assert outcomes["DEVICE_DOWNLOAD_LIMIT"] + outcomes["TITLE_YEARLY_LIMIT"] > 0
    assert outcomes["ALREADY_EXPIRED"] > 0
    assert outcomes["UNKNOWN_LICENSE"] + outcomes["LICENSE_RELEASED"] > 0
    assert outcomes["RENEWAL_LIMIT"] > 0
    assert len({r for r in outcomes if r in Reason.__members__}) >= 6
    assert outcomes["DUPLICATE"] == sum(1 for i in items if i.kind is ItemKind.DUPLICATE)


def test_the_generator_model_matches_the_decider(decided):
    """Good events are shaped to be accepted and limit-breaking ones to be rejected: the generator's
    member model must stay close to the real rules, or the shares mean nothing."""
    good = [d for i, d in decided if i.kind is ItemKind.GOOD]
    breaking = [d for i, d in decided if i.kind is ItemKind.BREAKING]
    assert sum(isinstance(d, Accepted) for d in good) >= 0.99 * len(good)
    assert sum(isinstance(d, Rejected) for d in breaking) >= 0.98 * len(breaking)


def test_members_bookkeeping_stays_small():
    from tools.simulate.workload import MAX_LICENSES, _Generator

    generator = _Generator(WorkloadConfig(seed=5, members=50, events=20_000))
    for _ in generator.items():
        pass
    assert max(len(m.licenses) for m in generator.members if m) <= MAX_LICENSES
    assert len(generator.recent) <= 256


def test_config_refuses_nonsense():
    for bad in ({"members": 0}, {"events": -1}, {"titles": 0}, {"zipf_exponent": 0}, {"share_malformed": 1.5},
                {"share_limit_breaking": 0.6, "share_duplicates": 0.5}, {"id_prefix": "a b"}):
        with pytest.raises(ValueError):
            WorkloadConfig(**bad)


# --- outputs ------------------------------------------------------------------------------------


def test_json_lines_are_the_ledger_publish_format(items):
    out = io.StringIO()
    stats = write_jsonl(items, out)
    lines = out.getvalue().splitlines()
    assert stats.skipped == sum(1 for i in items if i.kind is ItemKind.UNDECODABLE)
    assert len(lines) == len(items) - stats.skipped == stats.written
    written = [i for i in items if i.kind is not ItemKind.UNDECODABLE]
    for item, line in zip(written, lines):
        if item.kind is ItemKind.MALFORMED:
            with pytest.raises(MalformedEvent):
                event_from_json(json.loads(line))
        else:
            assert event_from_json(json.loads(line)) == item.event


def test_cli_writes_identical_json_lines_for_a_seed(tmp_path, capsys):
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"]
    for path, seed in zip(paths, (5, 5, 6)):
        assert ledger_main(["simulate", "--members", "100", "--events", "2000", "--seed", str(seed),
                            "--share-undecodable", "0.01", "--jsonl", str(path)]) == 0
    summary = capsys.readouterr().out
    assert "undecodable items (raw bytes have no JSON form)" in summary and "events/s" in summary
    assert paths[0].read_bytes() == paths[1].read_bytes() != paths[2].read_bytes()


def test_cli_refuses_bad_arguments_in_one_line(capsys):
    assert ledger_main(["simulate", "--members", "0", "--jsonl", "-"]) == 1
    assert ledger_main(["simulate", "--jsonl", "-", "--rate", "10"]) == 1
    assert ledger_main(["simulate", "--rate", "0"]) == 1
    assert ledger_main(["simulate", "--start", "soon", "--jsonl", "-"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and all(line.startswith("ledger simulate: ") for line in errors)


def test_start_accepts_iso_and_epoch_milliseconds():
    assert parse_start("2026-01-01T00:00:00Z") == DEFAULT_START_MS
    assert parse_start("2026-01-01") == DEFAULT_START_MS
    assert parse_start(str(DEFAULT_START_MS)) == DEFAULT_START_MS


def test_token_bucket_holds_to_the_rate():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate=100, burst=10, clock=lambda: now[0], sleep=sleep)
    for _ in range(50):
        bucket.take(10)
    assert now[0] == pytest.approx(5.0, rel=0.01)  # 500 tokens at 100/s, starting empty
    with pytest.raises(ValueError):
        bucket.take(11)


def test_token_bucket_chunks_grow_when_the_sender_is_slow():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    bucket = TokenBucket(rate=1_000, burst=1_000, clock=lambda: now[0], sleep=sleep)
    assert bucket.take_up_to(500) == 1  # starts empty: waits for one token
    now[0] += 0.2  # a slow acknowledgement: 200 tokens accrue meanwhile
    assert bucket.take_up_to(500) == 200
    now[0] += 5.0  # a long stall catches up at most `burst`, capped by the chunk limit
    assert bucket.take_up_to(500) == 500
    assert bucket.take_up_to(5_000) == 500
    taken, start = 0, now[0]
    while taken < 3_000:
        taken += bucket.take_up_to(100)
    assert now[0] - start == pytest.approx(3.0, abs=0.01)


def test_the_default_workload_is_not_ahead_of_the_wall_clock():
    """Published now, events more than LEDGER_MAX_FUTURE_SKEW_MS after their message timestamp (the
    send time) would be dead letters clock_skew: the default workload lies in the past."""
    config = WorkloadConfig()
    assert config.start_ms + config.span_ms < time.time() * 1000
    assert future_skew_warning(config, int(time.time() * 1000), 3_600_000) is None


def test_a_workload_in_the_future_gets_a_clock_skew_warning():
    config = WorkloadConfig(start_ms=DAY_MS * 1000, span_ms=DAY_MS)
    now = DAY_MS * 1000
    assert future_skew_warning(config, now, DAY_MS) is None  # ends exactly at the limit
    warning = future_skew_warning(config, now, DAY_MS - 1)
    assert "clock_skew" in warning and "--start" in warning
    assert future_skew_warning(config, now, 0) is None  # the guard is off


# --- the demo's status line: transient Kafka errors are "not ready yet" ----------------------


class _CoordinatorLoading:
    """A ConsumerLag whose group coordinator is still loading, as right after `ledger stack reset`."""

    def __init__(self, failures: int):
        self.failures = failures

    def group_lag(self, group, topics):
        from types import SimpleNamespace

        from app.adapters.kafka.lag import LagError

        if self.failures:
            self.failures -= 1
            raise LagError("committed offsets of group: Broker: Not coordinator")
        return SimpleNamespace(total=lambda: 14)


def test_the_demo_lag_waits_for_a_loading_coordinator_instead_of_crashing():
    from app.config import Settings
    from tools.demo.status import LagReader, Snapshot, status_line, take

    reader = LagReader(Settings(), "group", consumer_lag=_CoordinatorLoading(failures=2))
    first = take("http://127.0.0.1:1/metrics", reader)  # nothing listens on port 1 either
    assert first.lag is None and "Not coordinator" in first.lag_error
    assert "lag waiting for Kafka (committed offsets of group: Broker: Not coordinator)" in status_line(first, None)
    assert take("http://127.0.0.1:1/metrics", reader).lag is None
    ready = take("http://127.0.0.1:1/metrics", reader)
    assert ready.lag == 14 and status_line(ready, first).endswith("lag 14")
    assert isinstance(ready, Snapshot)
