"""`ledger bench`: every benchmark of issue 6 in one session against the local stack (`make bench`)."""
from __future__ import annotations

import argparse
import shlex
import sys

DESCRIPTION = """\
Measure the ceilings of this machine (Kafka consume, Cassandra plain and conditional writes, Redis
pipelined writes), the pipeline end to end (throughput and publish-to-view latency of one worker),
a naive one-event-at-a-time agent as the baseline, the replay, the what-if, the read API and the worker's memory
as the number of members grows. Writes bench/results/<timestamp>.json and .md; a full run also
refreshes the table in BENCHMARKS.md. Everything runs on topics, keyspaces and a Redis database of
its own, deleted at the end.

--soak MINUTES runs a soak instead: one worker under steady input at 70% of the sustained rate (or
--soak-rate), a table of RSS, lag, p99 latency, dead letters and errors printed every minute, the
views checked at the end and a verdict (held, not held, inconclusive under 15 minutes). Writes
bench/results/soak-<timestamp>.json and .md; never touches BENCHMARKS.md."""


def register(sub) -> None:
    p = sub.add_parser("bench", help="run the benchmarks against the local stack (bench/results/)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test of about a minute")
    p.add_argument("--events", type=int, help="events of the end-to-end and memory runs (default 100000)")
    p.add_argument("--members", type=int, help="members of the end-to-end run (default 100000)")
    p.add_argument("--memory-members", type=int, help="members of the memory run (default 1000000)")
    p.add_argument("--seed", type=int, help="workload seed (default 1)")
    p.add_argument("--batch-size", type=int, help="LEDGER_BATCH_SIZE of the workers (default 500)")
    p.add_argument("--cache-size", type=int, help="LEDGER_MEMBER_CACHE_SIZE of the workers (default 50000)")
    p.add_argument("--naive-events", type=int, help="events published for the naive agent (default 20000)")
    p.add_argument("--naive-seconds", type=float, help="how long the naive agent runs (default 45)")
    p.add_argument("--latency-seconds", type=float, help="latency measurement after the warm-up (default 40)")
    p.add_argument("--api-rate", type=float, help="fixed request rate of the API latency figure (default 1000)")
    p.add_argument("--api-seconds", type=float, help="duration at the fixed rate (default 30)")
    p.add_argument("--cassandra-plain-rows", type=int, help="rows of the plain-write ceiling (default 50000)")
    p.add_argument("--cassandra-lwt-rows", type=int, help="rows of the conditional-write ceiling (default 20000)")
    p.add_argument("--cassandra-concurrency", type=int, help="statements in flight for the ceilings (default 256)")
    p.add_argument("--replay-verify", action="store_true",
                   help="also run the replay's verification against the event store (timed apart; minutes)")
    p.add_argument("--redis-db", type=int, help="Redis database index of the run (default 9; only it is flushed)")
    p.add_argument("--skip", action="append", default=[], metavar="PHASE",
                   help="skip a phase (repeatable): ceilings, naive, e2e, latency, replay, whatif, api, memory")
    p.add_argument("--profile", action="store_true",
                   help="profile the end-to-end worker with py-spy (pip install -e '.[bench]')")
    p.add_argument("--soak", type=int, metavar="MINUTES",
                   help="instead of the phases: a soak of one worker for MINUTES minutes at 70%% of the sustained "
                        "rate (measured by its warm-up), a per-minute table, a verdict (bench/results/soak-*.json|md)")
    p.add_argument("--soak-rate", type=float, metavar="N",
                   help="input rate of the soak in events/s, instead of 70%% of the rate its warm-up measures")
    p.add_argument("--soak-warmup-events", type=int, metavar="N",
                   help="the first N items of the soak's workload, published at once before its first minute: the "
                        "worker decides them at full speed, which fills the store and measures the sustained rate "
                        "(default 200000; 0 needs --soak-rate)")
    p.add_argument("--out", help="results folder (default bench/results)")
    p.add_argument("--split-roles", metavar="ROLE,ROLE", type=split_roles,
                   help="the split phase's two worker processes: all,all (default: two workers sharing the "
                        "partitions) or decider,projector")
    p.add_argument("--no-docs", action="store_true", help="do not refresh the table in BENCHMARKS.md")
    p.set_defaults(handler=run)


OPTION_FIELDS = {
    "events": "events", "members": "members", "memory_members": "memory_members", "seed": "seed",
    "batch_size": "batch_size", "cache_size": "cache_size", "naive_events": "naive_events",
    "naive_seconds": "naive_seconds", "latency_seconds": "latency_seconds", "api_rate": "api_rate",
    "api_seconds": "api_seconds", "cassandra_plain_rows": "cassandra_plain_rows",
    "cassandra_lwt_rows": "cassandra_lwt_rows", "cassandra_concurrency": "cassandra_concurrency",
    "redis_db": "redis_db", "out": "out_dir", "soak": "soak_minutes", "soak_rate": "soak_rate",
    "soak_warmup_events": "soak_warmup_events",
}
# what a soak uses besides its own options; the phases' sizes do not apply to it
SOAK_OPTIONS = ("members", "seed", "batch_size", "cache_size", "redis_db", "out", "soak_rate",
                "soak_warmup_events")


def split_roles(text: str) -> tuple[str, ...]:
    from tools.bench.report import SPLIT_SHAPES

    roles = tuple(r.strip() for r in text.split(","))
    if roles not in SPLIT_SHAPES:
        raise argparse.ArgumentTypeError(f"{text!r}: one of {', '.join(','.join(c) for c in SPLIT_SHAPES)}")
    return roles


def run(args, settings) -> int:
    from app.entrypoints.commands.errors import CommandError
    from tools.bench.runner import PHASES, BenchConfig

    bad = [s for s in args.skip if s not in PHASES]
    if bad:
        raise CommandError(f"unknown phase(s) {', '.join(bad)}; phases: {', '.join(PHASES)}")
    _check_soak_options(args)
    overrides = {field: getattr(args, opt) for opt, field in OPTION_FIELDS.items() if getattr(args, opt) is not None}
    for name in ("events", "members", "memory_members", "batch_size", "cache_size"):
        if name in overrides and overrides[name] < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
    overrides.update(skip=list(args.skip), profile=args.profile, replay_verify=args.replay_verify)
    if args.split_roles is not None:
        overrides["split_roles"] = args.split_roles
    if args.no_docs:
        overrides["update_docs"] = False
    if "batch_size" not in overrides:
        overrides["batch_size"] = settings.batch_size
    if "cache_size" not in overrides and not args.quick:
        overrides["cache_size"] = settings.member_cache_size
    overrides.setdefault("batch_wait_ms", settings.batch_wait_ms)
    cfg = BenchConfig.quick_sizes(**overrides) if args.quick else BenchConfig(**overrides)
    _check_stack(settings)
    from tools.bench.runner import run as run_bench

    command = "ledger " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else \
        "ledger bench" + (" --quick" if args.quick else "")
    import signal

    def stop(signum, _frame):  # SIGTERM (a timeout, CI) unwinds like Ctrl-C: the run cleans up after itself
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        if cfg.soak_minutes is not None:
            from tools.bench.soak import run as run_soak

            _, code = run_soak(cfg, settings, command, echo=lambda m: print(m, flush=True))
        else:
            _, code = run_bench(cfg, settings, command, echo=lambda m: print(m, flush=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code


def _check_soak_options(args) -> None:
    """--soak runs the soak alone: options of the other phases are refused rather than ignored."""
    from app.entrypoints.commands.errors import CommandError

    if args.soak is None:
        given = [o for o in ("soak_rate", "soak_warmup_events") if getattr(args, o) is not None]
        if given:
            raise CommandError(f"--{given[0].replace('_', '-')} applies to --soak only")
        return
    if args.soak < 1:
        raise CommandError("--soak must be at least 1 minute")
    if args.soak_rate is not None and not args.soak_rate > 0:
        raise CommandError("--soak-rate must be > 0")
    if args.soak_warmup_events is not None and args.soak_warmup_events < 0:
        raise CommandError("--soak-warmup-events must be at least 0")
    if args.soak_warmup_events == 0 and args.soak_rate is None:
        raise CommandError("--soak-warmup-events 0 measures no sustained rate: give --soak-rate")
    others = [o for o in OPTION_FIELDS if o not in SOAK_OPTIONS and o != "soak" and getattr(args, o) is not None]
    others += [flag for flag, on in (("quick", args.quick), ("skip", args.skip), ("profile", args.profile),
                                     ("replay_verify", args.replay_verify),
                                     ("split_roles", args.split_roles is not None)) if on]
    if others:
        raise CommandError(f"--soak does not take {', '.join('--' + o.replace('_', '-') for o in others)}")


def _check_stack(settings) -> None:
    """One line instead of a traceback when the stack is not up (`make stack-up`)."""
    import socket

    from app.entrypoints.commands.errors import CommandError

    for name, host, port in (("Kafka", *_host_port(settings.kafka_bootstrap.split(",")[0], 9092)),
                             ("Cassandra", settings.cassandra_contact_points[0], settings.cassandra_port),
                             ("Redis", "127.0.0.1", 6379)):
        if name == "Redis":
            from urllib.parse import urlparse

            u = urlparse(settings.redis_url)
            host, port = u.hostname or "127.0.0.1", u.port or 6379
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError:
            raise CommandError(f"{name} is not answering at {host}:{port}: start the stack (make stack-up)") from None


def _host_port(text: str, default: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host or text, int(port)) if port.isdigit() else (text, default)
