"""`ledger bench`: the benchmarks of issue 6, run against the local stack in one session.

Modules, one per kind of figure: `ceilings` (Kafka, Cassandra and Redis on this machine),
`end_to_end` (throughput and publish-to-view latency of a `ledger worker --role all` process),
`naive_baseline` (a one-event-at-a-time Faust agent doing the same work), `replay_bench`,
`api_bench`, `memory`, and `report` (JSON and Markdown). `env` isolates a run from everything else
on the stack (its own topics, keyspaces and Redis database), `runner` chains the phases.
"""
