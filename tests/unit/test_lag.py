"""Consumer lag arithmetic, the worker's gauges and `ledger status` output (no Kafka)."""
from __future__ import annotations

from prometheus_client import REGISTRY

from app import observability
from app.adapters.kafka.lag import GroupLag, Member, partition_lag
from app.entrypoints.commands import status_cmd
from app.entrypoints.worker.lag_exporter import members_by_role

NOW = 1_000_000


def test_lag_counts_from_the_committed_offset_and_ages_the_message_there():
    p = partition_lag("events", "decider", 0, low=0, end=10, committed=7, oldest_timestamp=NOW - 2_500, now_ms=NOW)
    assert (p.messages, p.seconds, p.oldest_timestamp) == (3, 2.5, NOW - 2_500)


def test_a_partition_never_committed_counts_from_the_beginning():
    p = partition_lag("events", "decider", 0, low=4, end=10, committed=None, oldest_timestamp=NOW, now_ms=NOW)
    assert p.messages == 6


def test_a_committed_offset_deleted_by_retention_counts_from_the_first_stored_message():
    p = partition_lag("events", "decider", 0, low=50, end=60, committed=3, oldest_timestamp=None, now_ms=NOW)
    assert p.messages == 10 and p.seconds == 0.0


def test_no_lag_is_zero_seconds_whatever_the_timestamp():
    p = partition_lag("events", "decider", 0, low=0, end=10, committed=10, oldest_timestamp=NOW - 99_000, now_ms=NOW)
    assert (p.messages, p.seconds, p.oldest_timestamp) == (0, 0.0, None)


def test_members_count_for_each_stage_their_group_runs():
    groups = {"g-decider": {"events": "decider"}, "g-projector": {"ledger": "projector"},
              "g-all": {"events": "decider", "ledger": "projector"}}
    member = Member("m", "c", "h", ())
    described = {"g-decider": ("STABLE", [member, member]), "g-projector": ("EMPTY", []),
                 "g-all": ("STABLE", [member])}
    assert members_by_role(described, groups) == {"decider": 3, "projector": 1}
    assert members_by_role({}, groups) == {"decider": 0, "projector": 0}


def _sample(name: str, **labels):
    return REGISTRY.get_sample_value(name, labels)


def test_the_gauges_follow_the_measured_partitions_and_drop_the_ones_gone():
    a = partition_lag("t-a", "decider", 0, 0, 10, 4, NOW - 1_000, NOW)
    b = partition_lag("t-a", "decider", 1, 0, 10, 10, None, NOW)
    observability.record_lag([a, b], {"decider": 2, "projector": 0})
    assert _sample("ledger_consumer_lag_messages", role="decider", topic="t-a", partition="0") == 6
    assert _sample("ledger_consumer_lag_seconds", role="decider", topic="t-a", partition="0") == 1.0
    assert _sample("ledger_consumer_lag_messages", role="decider", topic="t-a", partition="1") == 0
    assert _sample("ledger_consumer_group_members", role="projector") == 0
    observability.record_lag([a], {"decider": 2, "projector": 1})
    assert _sample("ledger_consumer_lag_messages", role="decider", topic="t-a", partition="1") is None
    assert _sample("ledger_consumer_group_members", role="projector") == 1
    observability.record_lag([], {})


def _group(members, committed=5):
    parts = [partition_lag("events", "decider", p, 0, 10, committed, NOW - 3_000, NOW) for p in range(3)]
    return GroupLag("g-decider", "EMPTY" if not members else "STABLE", members, parts)


def test_status_says_a_group_has_no_members_and_shows_its_lag_per_partition():
    lines = status_cmd.describe("decider", _group([]))
    assert "NO MEMBERS" in lines[0] and "events" in lines[0]
    assert "lag 15 message(s), oldest 3.0 s" in lines[1]
    assert len([line for line in lines if line.split()[:1] in (["0"], ["1"], ["2"])]) == 3


def test_status_lists_members_with_their_partitions():
    member = Member("consumer-1", "faust", "/127.0.0.1", (("events", 0), ("events", 1), ("events", 2),
                                                           ("events", 5), ("ledger", 0)))
    lines = status_cmd.describe("decider", _group([member]))
    assert lines[0].endswith("1 member(s), state STABLE")
    assert "events[0-2,5], ledger[0]" in lines[1]


def test_status_calls_a_group_that_never_ran_not_in_use():
    lines = status_cmd.describe("all", _group([], committed=None))
    assert lines == ["group g-decider (role all): not in use: no members, never committed (a worker of this role "
                     "would start from the beginning: events 30 message(s))"]
    assert status_cmd.as_json("all", _group([], committed=None))["in_use"] is False
