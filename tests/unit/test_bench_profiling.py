"""The bench's profile summary: each sample is charged to the layer of the frame nearest the top of its stack."""
from __future__ import annotations

from tools.bench.profiling import EVENT_LOOP, layers

LOOP = "BaseEventLoop._run_once (asyncio/base_events.py:1922);Handle._run (asyncio/events.py:80)"


def shares(collapsed: str) -> dict[str, int]:
    return {label: n for label, n, _ in layers(collapsed) if n}


def test_a_statement_issued_by_the_event_store_counts_for_the_driver_and_its_rows_for_the_append():
    collapsed = "\n".join([
        f"{LOOP};CassandraEventStore._append_bucket (app/adapters/cassandra/event_store.py:200);"
        "execute (app/adapters/cassandra/aio.py:40);Session.execute_async (cassandra/cluster.py:9) 3",
        f"{LOOP};CassandraEventStore._append_bucket (app/adapters/cassandra/event_store.py:200);"
        "CassandraEventStore.row (app/adapters/cassandra/event_store.py:90);encode_event (app/adapters/avro/mapping.py:5) 2",
    ])
    assert shares(collapsed) == {"Cassandra driver: issue and receive statements": 3,
                                 "decider: append (event-store rows, Avro encode, lookups, conditional batches)": 2}


def test_a_stack_of_the_event_loop_alone_is_the_loops_and_the_percentages_add_up():
    collapsed = f"{LOOP} 1\n{LOOP};Projector.process (app/service/projector.py:100) 3\nsomething (elsewhere.py:1) 1"
    rows = layers(collapsed)
    assert shares(collapsed) == {EVENT_LOOP[0]: 1, "projector: decode, fold, Redis and Cassandra writes": 3,
                                 "other": 1}
    assert sum(p for _, _, p in rows) == 100.0


def test_no_samples_give_no_layers():
    assert layers("") == []


def test_our_own_adapters_are_not_taken_for_the_libraries_they_wrap():
    collapsed = "\n".join([
        f"{LOOP};Decider.publish (app/service/decider.py:300);"
        "CassandraProgressStore.save (app/adapters/cassandra/progress.py:50) 2",
        f"{LOOP};ClockProjector.process (app/service/member_clocks.py:80);"
        "Script.run_many (app/adapters/redis/commands.py:30) 1",
        f"{LOOP};RedisViewStore.write_many (app/adapters/redis/view_store.py:70);"
        "Pipeline.execute (redis/asyncio/client.py:1500) 4",
    ])
    assert shares(collapsed) == {"decider: publish (ledger outputs, progress)": 2, "clock projector": 1, "redis-py": 4}
