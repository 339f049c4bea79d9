"""Bytes per member in each store, for sizing (docs/scaling.md). Needs no stack.

The simulator's workload is decided by the pure domain (as the bench's oracle does), then:

- Redis: each member's view is written with the projector's layout (hash ``seq`` + ``state`` JSON,
  and the members set) into a private redis-server started on a free port, and ``used_memory`` is
  measured: real bytes, allocator and key overhead included.
- Cassandra: the logical bytes of what each table keeps per member (column values; the event
  store's payload is the Avro the decider stores), before Cassandra's per-cell overhead and
  compression, for one replica.
- Kafka: the encoded ledger entries and rejections (record values plus the member id key), before
  batch overhead and compression, for one replica.

    python -m tools.bench.storage_sizes --members 100000 --items 100000    # the bench's e2e workload
    python -m tools.bench.storage_sizes --members 10000 --items 500000     # ~50 decisions per member
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter

LICENSE_FIELDS_BYTES = 8 + 4 * 4 + 1 + 8  # expires_at, renewals .. studio_concurrent_limit, released, seq
SOURCE = ("downloads.events", 3, 123_456_789)  # a realistic source column (topic, partition, offset)


def measure(members: int, items: int, seed: int = 1, redis_server: str | None = "redis-server") -> dict:
    from app.adapters.avro.codec import default_codec
    from app.adapters.avro.mapping import encode_event, encode_ledger_entry, encode_rejection, snapshot_to_avro
    from app.adapters.view_json import encode_view
    from app.domain.decide import Accepted, Rejected, step
    from app.domain.history import Source, to_stored
    from app.domain.state import MemberState
    from tools.simulate.workload import EVENT_KINDS, WorkloadConfig, generate

    codec, source = default_codec(), Source(*SOURCE)
    states: dict[str, MemberState] = {}
    rows, events_bytes, ids_bytes, ledger_bytes, ledger_entries, rejection_bytes = (Counter() for _ in range(6))
    since_snapshot: Counter[str] = Counter()
    snapshots: dict[str, list[int]] = {}
    for item in generate(WorkloadConfig(seed=seed, members=members, events=items)):
        if item.kind not in EVENT_KINDS:
            continue
        event, member = item.event, item.event.member_id
        payload = len(encode_event(event))
        decision, state = step(states.get(member) or MemberState.empty(member), event)
        states[member] = state
        for row in to_stored(decision, event, state, source):
            rows[member] += 1
            since_snapshot[member] += 1
            # member_events: seq, sub, kind, event_id, clock, schema_version, payload, reason, detail, source
            events_bytes[member] += (8 + 4 + len(row.kind) + len(event.event_id) + 8 + 4 + payload
                                     + len(row.reason or "") + len(row.detail or "") + len(source.topic) + 4 + 8)
            ids_bytes[member] += len(event.event_id) + 8 + 4  # member_event_ids: event_id, seq, sub
        if isinstance(decision, Accepted):
            for recorded in decision.recorded:
                ledger_bytes[member] += len(encode_ledger_entry(recorded, source)) + len(member)
                ledger_entries[member] += 1
        elif isinstance(decision, Rejected):
            rejection_bytes[member] += len(member) + len(
                encode_rejection(event, str(decision.reason), decision.detail, decision.clock, source))
        if since_snapshot[member] >= 100:  # LEDGER_SNAPSHOT_EVERY; a member keeps its newest 3
            since_snapshot[member] = 0
            size = len(codec.encode("MemberSnapshot", snapshot_to_avro(state)))
            snapshots[member] = (snapshots.get(member, []) + [size])[-3:]

    views = {m: s for m, s in states.items() if s.seq > 0}
    n = len(views)
    view_json = {m: encode_view(s) for m, s in views.items()}
    read_models = 0
    for m, s in views.items():
        read_models += len(m) + 8 + 40 + 8 + len(view_json[m])  # summary: seq, plan, clock, state JSON
        for lic in s.licenses.values():
            read_models += (len(lic.license_id) + len(lic.device_id) + len(lic.title_id) + len(lic.studio_id)
                            + LICENSE_FIELDS_BYTES)
        read_models += sum(len(title) + 4 + 4 + 8 for title, _ in s.title_year_downloads)
    licenses = sorted(len(s.licenses) for s in views.values())
    decided = sorted(rows.values())

    def per_member(counter: Counter) -> int:
        return round(sum(counter.values()) / n)

    return {
        "workload": {"seed": seed, "members": members, "items": items, "members_with_views": n,
                     "decided_rows": sum(decided), "decided_rows_per_member_mean": round(sum(decided) / n, 1),
                     "decided_rows_per_member_p99": decided[int(0.99 * (len(decided) - 1))],
                     "licenses_per_member_mean": round(sum(licenses) / n, 1),
                     "licenses_per_member_max": licenses[-1]},
        "bytes_per_member": {
            "redis_used_memory": _redis_bytes(views, view_json, redis_server) if redis_server else None,
            "redis_view_json": round(sum(map(len, view_json.values())) / n),
            "cassandra_member_events": per_member(events_bytes),
            "cassandra_member_event_ids": per_member(ids_bytes),
            "cassandra_member_snapshots": round(sum(sum(v) for v in snapshots.values()) / n),
            "cassandra_read_models_one_namespace": round(read_models / n),
            "kafka_ledger": per_member(ledger_bytes),
            "kafka_rejections": per_member(rejection_bytes),
        },
        "bytes_per_row": {
            "cassandra_member_events": round(sum(events_bytes.values()) / sum(decided)),
            "cassandra_member_event_ids": round(sum(ids_bytes.values()) / sum(decided)),
            "kafka_ledger_entry": round(sum(ledger_bytes.values()) / max(1, sum(ledger_entries.values()))),
            "redis_view_json_per_license": _per_license(views, view_json),
        },
    }


def _per_license(views, view_json) -> int | None:
    """Slope of the view's JSON size against the member's license count (least squares)."""
    xs = [len(s.licenses) for s in views.values()]
    ys = [len(view_json[m]) for m in views]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var) if var else None


def _redis_bytes(views, view_json, redis_server: str) -> int:
    import redis

    binary = shutil.which(redis_server)
    if binary is None:
        raise SystemExit(f"{redis_server} not found (use --no-redis)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", folder], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            before = client.info("memory")["used_memory"]
            pipe = client.pipeline(transaction=False)
            for i, (member, state) in enumerate(views.items()):
                pipe.hset(f"ledger:v1:member:{member}", mapping={"seq": state.seq, "state": view_json[member]})
                pipe.sadd("ledger:v1:members", member)
                if i % 1000 == 999:
                    pipe.execute()
            pipe.execute()
            return round((client.info("memory")["used_memory"] - before) / len(views))
        finally:
            server.terminate()
            server.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.storage_sizes", description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000, help="simulator items (events, duplicates, bad input)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-server", default="redis-server", help="the binary to measure Redis with")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis measurement")
    args = parser.parse_args(argv)
    result = measure(args.members, args.items, args.seed, None if args.no_redis else args.redis_server)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
