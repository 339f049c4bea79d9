"""`ledger status`: consumer lag (messages and seconds) per partition, and the members, of every
worker group."""
from __future__ import annotations

import argparse
import json

from app.entrypoints.commands.errors import CommandError

DESCRIPTION = """\
For each worker group (LEDGER_CONSUMER_GROUP-decider, -projector, -all): its state and members
(consumer id, client id, host, assigned partitions), then per partition of each topic it consumes
the end offset, the committed offset, the lag in messages (end minus committed) and in seconds (the
age of the oldest unprocessed message: now minus the timestamp of the message at the committed
offset). A group with no members is reported as such: nothing processes its topic, and its lag can
only grow. A group that never committed and has no members is "not in use" (its lag is counted from
the beginning). Reads the cluster only; joins no group."""


def register(sub) -> None:
    p = sub.add_parser("status", help="consumer lag (messages, seconds) and members of every worker group",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="per request to the cluster (default 10)")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    from app import bootstrap
    from app.adapters.kafka.lag import LagError

    if args.timeout <= 0:
        raise CommandError("--timeout must be > 0")
    try:
        lag = bootstrap.consumer_lag(settings, timeout_s=args.timeout)
    except Exception as exc:
        raise CommandError(f"cannot create a Kafka client for {settings.kafka_bootstrap}: {exc}") from None
    groups = bootstrap.worker_groups(settings)
    try:
        described = lag.describe(list(groups))
        results = [(role, lag.group_lag(group, groups[group], described=described[group]))
                   for role, group in zip(bootstrap.ROLES, groups)]
    except LagError as exc:
        raise CommandError(f"cannot read the consumer groups from {settings.kafka_bootstrap}: {exc}") from None
    finally:
        lag.close()
    if args.json:
        print(json.dumps({"groups": [as_json(role, g) for role, g in results]}, indent=2))
    else:
        for role, g in results:
            print("\n".join(describe(role, g)))
    return 0


def as_json(role: str, g) -> dict:
    return {
        "group": g.group, "role": role, "state": g.state, "in_use": g.exists,
        "members": [{"member_id": m.member_id, "client_id": m.client_id, "host": m.host,
                     "assignment": [{"topic": t, "partition": p} for t, p in m.assignment]} for m in g.members],
        "lag": {stage: {"messages": g.total(stage), "seconds": round(g.oldest_seconds(stage), 3)}
                for stage in sorted({p.role for p in g.partitions})},
        "partitions": [{"topic": p.topic, "role": p.role, "partition": p.partition, "end": p.end,
                        "committed": p.committed, "lag_messages": p.messages, "lag_seconds": round(p.seconds, 3),
                        "oldest_timestamp": p.oldest_timestamp} for p in g.partitions],
    }


def describe(role: str, g) -> list[str]:
    topics = sorted({p.topic for p in g.partitions})
    if not g.exists:
        lag = ", ".join(f"{t} {sum(p.messages for p in g.partitions if p.topic == t):,}" for t in topics)
        return [f"group {g.group} (role {role}): not in use: no members, never committed "
                f"(a worker of this role would start from the beginning: {lag} message(s))"]
    n = len(g.members)
    if n:
        head = f"group {g.group} (role {role}): {n} member(s), state {g.state}"
    else:
        head = (f"group {g.group} (role {role}): NO MEMBERS (state {g.state}): nothing processes "
                f"{', '.join(topics)}; its lag only grows")
    lines = [head]
    for m in g.members:
        lines.append(f"  member {m.member_id} (client {m.client_id}, host {m.host}): {assignment(m.assignment)}")
    for topic in topics:
        rows = [p for p in g.partitions if p.topic == topic]
        stage = rows[0].role
        lines.append(f"  {topic} ({stage}): lag {g.total(stage):,} message(s), oldest {_seconds(g.oldest_seconds(stage))}")
        lines.append(f"    {'partition':>9}  {'end':>12}  {'committed':>12}  {'lag':>10}  {'lag s':>10}")
        for p in rows:
            committed = "-" if p.committed is None else f"{p.committed:,}"
            age = "?" if p.messages and p.oldest_timestamp is None else _seconds(p.seconds)
            lines.append(f"    {p.partition:>9}  {p.end:>12,}  {committed:>12}  {p.messages:>10,}  {age:>10}")
    return lines


def assignment(tps) -> str:
    """(topic, partition) pairs as "topic[0-3,7]"."""
    if not tps:
        return "no partitions"
    by_topic: dict[str, list[int]] = {}
    for t, p in tps:
        by_topic.setdefault(t, []).append(p)
    return ", ".join(f"{t}[{_ranges(sorted(ps))}]" for t, ps in sorted(by_topic.items()))


def _ranges(ps: list[int]) -> str:
    out, start, prev = [], ps[0], ps[0]
    for p in ps[1:] + [None]:
        if p is not None and p == prev + 1:
            prev = p
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if p is not None:
            start = prev = p
    return ",".join(out)


def _seconds(s: float) -> str:
    return f"{s:,.1f} s"
