"""How many decision rows a second Cassandra stores with conditional batches, by members per Paxos round.

``python -m tools.bench.paxos_amortization [--members N] [--rounds R] [--per-round 5 20 50]`` compares,
on a keyspace of its own (dropped at the end), with the workers' session (consistency levels, login):

- **per member**: today's event store layout, one partition per member with its head in static
  columns, one conditional batch (one Paxos round) per member and append, as
  ``app.adapters.cassandra.event_store`` sends it;
- **bucketed, k per round**: a partition per bucket of k members, a head row per member, and one
  conditional batch per bucket and append holding the k heads' conditions (``IF head_seq = ? AND
  head_sub = ?`` on each member's head row) and their rows: one Paxos round for k members.

Each append of a member moves its head from the last round's position, so every round after the
first is conditional on the one before; the rounds run in order, each with ``--concurrency``
statements in flight. It measures the cost of a Paxos round against the rows it carries, the question
behind issue 11's direction 2; it builds no store (docs/architecture.md, "One conditional write per
member and batch").
"""
from __future__ import annotations

import argparse
import os
import time
import uuid

PAYLOAD_BYTES = 180  # an encoded DownloadEvent of the bench's workload


class Layouts:
    """The two tables and their prepared statements, in a keyspace created for the run."""

    def __init__(self, session, keyspace: str):
        self.session = session
        self.keyspace = ks = keyspace
        session.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', "
                        "'replication_factor': 1}", timeout=60)
        session.execute(f"CREATE TABLE {ks}.per_member (member_id text, seq bigint, sub int, payload blob, "
                        "head_seq bigint static, head_sub int static, PRIMARY KEY ((member_id), seq, sub))",
                        timeout=60)
        session.execute(f"CREATE TABLE {ks}.bucketed (bucket int, member_id text, seq bigint, sub int, "
                        "payload blob, head_seq bigint, head_sub int, PRIMARY KEY ((bucket), member_id, seq, sub))",
                        timeout=60)
        p = session.prepare
        self.first_head = p(f"UPDATE {ks}.per_member SET head_seq = ?, head_sub = ? WHERE member_id = ? "
                            "IF head_seq = null")
        self.move_head = p(f"UPDATE {ks}.per_member SET head_seq = ?, head_sub = ? WHERE member_id = ? "
                           "IF head_seq = ? AND head_sub = ?")
        self.insert = p(f"INSERT INTO {ks}.per_member (member_id, seq, sub, payload) VALUES (?, ?, ?, ?)")
        self.bucket_first_head = p(f"INSERT INTO {ks}.bucketed (bucket, member_id, seq, sub, head_seq, head_sub) "
                                   "VALUES (?, ?, -1, 0, ?, ?) IF NOT EXISTS")
        self.bucket_move_head = p(f"UPDATE {ks}.bucketed SET head_seq = ?, head_sub = ? WHERE bucket = ? AND "
                                  "member_id = ? AND seq = -1 AND sub = 0 IF head_seq = ? AND head_sub = ?")
        self.bucket_insert = p(f"INSERT INTO {ks}.bucketed (bucket, member_id, seq, sub, payload) "
                               "VALUES (?, ?, ?, ?, ?)")

    def per_member_round(self, members: int, seq: int, payload: bytes) -> list:
        from cassandra.query import BatchStatement, BatchType

        statements = []
        for m in range(members):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            member = f"m{m}"
            if seq == 1:
                batch.add(self.first_head, (1, 0, member))
            else:
                batch.add(self.move_head, (seq, 0, member, seq - 1, 0))
            batch.add(self.insert, (member, seq, 0, payload))
            statements.append((batch, ()))
        return statements

    def bucketed_round(self, members: int, per_round: int, seq: int, payload: bytes) -> list:
        from cassandra.query import BatchStatement, BatchType

        statements = []
        for start in range(0, members, per_round):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            bucket = start // per_round
            for m in range(start, min(start + per_round, members)):
                member = f"m{m}"
                if seq == 1:
                    batch.add(self.bucket_first_head, (bucket, member, 1, 0))
                else:
                    batch.add(self.bucket_move_head, (seq, 0, bucket, member, seq - 1, 0))
                batch.add(self.bucket_insert, (bucket, member, seq, 0, payload))
            statements.append((batch, ()))
        return statements

    def rows(self, table: str) -> int:
        return self.session.execute(f"SELECT COUNT(*) FROM {self.keyspace}.{table}", timeout=120).one()[0]

    def drop(self) -> None:
        self.session.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}", timeout=120)


def timed(session, rounds: list[list], concurrency: int) -> dict:
    """Run each round's statements with ``concurrency`` in flight, the rounds in order."""
    from cassandra.concurrent import execute_concurrent

    began, cpu = time.perf_counter(), time.process_time()
    statements = refused = 0
    for statements_of_round in rounds:
        for ok, result in execute_concurrent(session, statements_of_round, concurrency=concurrency,
                                             raise_on_first_error=False):
            statements += 1
            if not ok or not result.one()[0]:  # the first column of a conditional answer is [applied]
                refused += 1
    return {"seconds": time.perf_counter() - began, "client_cpu_s": time.process_time() - cpu,
            "paxos_rounds": statements, "not_applied": refused}


def run(session, members: int, rounds: int, per_round: list[int], concurrency: int) -> list[dict]:
    layouts = Layouts(session, f"bench_paxos_{uuid.uuid4().hex[:8]}")
    payload = os.urandom(PAYLOAD_BYTES)
    rows = members * rounds
    results = []
    try:
        variants = [("per member", 1, "per_member",
                     lambda seq: layouts.per_member_round(members, seq, payload))]
        variants += [(f"bucketed, {k} per round", k, "bucketed",
                      lambda seq, k=k: layouts.bucketed_round(members, k, seq, payload)) for k in per_round]
        for name, k, table, build in variants:
            if table == "bucketed":
                layouts.session.execute(f"TRUNCATE {layouts.keyspace}.bucketed", timeout=120)
            out = timed(session, [build(seq) for seq in range(1, rounds + 1)], concurrency)
            stored = layouts.rows(table) - (members if table == "bucketed" else 0)  # minus the head rows
            results.append({"layout": name, "members_per_round": k, "rows": rows, "rows_stored": stored,
                            "rows_per_s": rows / out["seconds"], **out})
    finally:
        layouts.drop()
    return results


def main(argv: list[str] | None = None) -> int:
    from app.adapters.cassandra import session as cassandra_session
    from app.config import Settings

    p = argparse.ArgumentParser(prog="python -m tools.bench.paxos_amortization", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=8_000)
    p.add_argument("--rounds", type=int, default=3, help="appends per member (default 3)")
    p.add_argument("--per-round", type=int, nargs="+", default=[5, 20, 50], metavar="K",
                   help="members per Paxos round of the bucketed layout (default 5 20 50)")
    p.add_argument("--concurrency", type=int, default=64)
    args = p.parse_args(argv)
    cluster, session = cassandra_session.connect(Settings())
    try:
        results = run(session, args.members, args.rounds, args.per_round, args.concurrency)
    finally:
        cluster.shutdown()
    base = results[0]["rows_per_s"]
    for r in results:
        print(f"{r['layout']}: {r['rows']:,} rows in {r['seconds']:.1f} s = {r['rows_per_s']:,.0f} rows/s "
              f"({r['rows_per_s'] / base:.1f}x), {r['paxos_rounds']:,} Paxos rounds, {r['not_applied']} not applied, "
              f"{r['rows_stored']:,} rows stored; client CPU {r['client_cpu_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
