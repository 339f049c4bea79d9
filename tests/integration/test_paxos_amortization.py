"""tools/bench/paxos_amortization.py against the real Cassandra: every conditional batch of both layouts
applies, in order, and stores every row it carries (its figures are only meaningful if they do)."""
from __future__ import annotations

import pytest

from tools.bench import paxos_amortization

pytestmark = pytest.mark.stack


def test_both_layouts_store_every_row_with_one_paxos_round_per_member_or_per_bucket(cassandra):
    results = paxos_amortization.run(cassandra, members=60, rounds=3, per_round=[20], concurrency=16)
    per_member, bucketed = results
    assert per_member["layout"] == "per member" and bucketed["members_per_round"] == 20
    for r in results:
        assert r["not_applied"] == 0 and r["rows_stored"] == r["rows"] == 180, r
    assert per_member["paxos_rounds"] == 180 and bucketed["paxos_rounds"] == 9
    keyspaces = {row.keyspace_name for row in cassandra.execute("SELECT keyspace_name FROM system_schema.keyspaces")}
    assert not any(k.startswith("bench_paxos_") for k in keyspaces)
