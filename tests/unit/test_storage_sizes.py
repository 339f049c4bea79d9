"""tools/bench/storage_sizes.py, the source of docs/scaling.md's bytes per member, keeps running."""
from __future__ import annotations

from tools.bench.storage_sizes import measure


def test_bytes_per_member_are_measured_for_every_store():
    result = measure(members=200, items=3_000, redis_server=None)
    sizes = result["bytes_per_member"]
    assert result["workload"]["members_with_views"] > 0
    assert sizes["redis_used_memory"] is None  # no redis-server asked for
    for store in ("redis_view_json", "cassandra_member_events", "cassandra_member_event_ids",
                  "cassandra_read_models_one_namespace", "kafka_ledger"):
        assert sizes[store] > 0, store
    assert result["bytes_per_row"]["cassandra_member_events"] > result["bytes_per_row"]["cassandra_member_event_ids"]
