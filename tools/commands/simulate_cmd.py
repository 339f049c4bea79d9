"""`ledger simulate`: publish a seeded, realistic workload to Kafka, or write it as JSON lines."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime

from app.entrypoints.commands.errors import CommandError

DAY_MS = 86_400_000


def register(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="publish a seeded, realistic workload (or write it as JSON lines)",
        description="Generate a deterministic workload (the same seed gives the same items, byte for byte): "
        "members with plans, Zipf-popular titles, acquisitions, renewals, releases, device deactivations, "
        "limit-breaking attempts, duplicates, malformed and undecodable messages. Publishes to Kafka "
        "(Avro, keyed by member_id) or writes JSON lines in the `ledger publish` format.",
    )
    p.add_argument("--members", type=int, default=100_000, help="members (default 100000)")
    p.add_argument("--events", type=int, default=1_000_000, help="items in all, of every kind (default 1000000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--titles", type=int, default=5_000, help="catalogue size (default 5000)")
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of title popularity (default 1.1)")
    p.add_argument("--share-limit-breaking", type=float, default=0.1, metavar="SHARE", help="default 0.1")
    p.add_argument("--share-duplicates", type=float, default=0.02, metavar="SHARE", help="default 0.02")
    p.add_argument("--share-malformed", type=float, default=0.005, metavar="SHARE", help="default 0.005")
    p.add_argument("--share-undecodable", type=float, default=0.002, metavar="SHARE", help="default 0.002")
    p.add_argument("--start", default="2026-01-01T00:00:00Z",
                   help="event time of the first item: ISO-8601 or epoch milliseconds (default 2026-01-01T00:00:00Z)")
    p.add_argument("--span-days", type=float, default=90.0, help="event time covered by the items (default 90)")
    p.add_argument("--id-prefix", default="", help="prefix of member, event and license ids (keeps runs apart)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, metavar="EVENTS_PER_S", help="target publish rate (token bucket)")
    pace.add_argument("--max-rate", action="store_true", help="publish as fast as possible (the default)")
    p.add_argument("--jsonl", metavar="FILE", help="write JSON lines to FILE ('-': stdout) instead of publishing")
    p.add_argument("--topic", help="topic to publish to (default: LEDGER_EVENTS_TOPIC)")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    from tools.simulate.workload import WorkloadConfig, generate

    if args.jsonl is not None and (args.topic or args.rate is not None or args.max_rate):
        raise CommandError("--jsonl writes a file: --topic, --rate and --max-rate apply to publishing only")
    if args.rate is not None and not args.rate > 0:
        raise CommandError(f"--rate must be > 0, got {args.rate:g}")
    try:
        config = WorkloadConfig(
            seed=args.seed,
            members=args.members,
            events=args.events,
            titles=args.titles,
            zipf_exponent=args.zipf,
            share_limit_breaking=args.share_limit_breaking,
            share_duplicates=args.share_duplicates,
            share_malformed=args.share_malformed,
            share_undecodable=args.share_undecodable,
            start_ms=parse_start(args.start),
            span_ms=int(args.span_days * DAY_MS),
            id_prefix=args.id_prefix,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.jsonl is not None:
        return _write_jsonl(args.jsonl, generate(config), config)
    warning = future_skew_warning(config, int(time.time() * 1000), settings.max_future_skew_ms)
    if warning:
        print(warning, file=sys.stderr)
    from app.bootstrap import kafka_connection

    return _publish(generate(config), config, kafka_connection(settings), args.topic or settings.events_topic, args.rate)


def future_skew_warning(config, now_ms: int, max_future_skew_ms: int) -> str | None:
    """A warning when the workload's event times run past now + the decider's skew limit: published
    now, those events would be dead letters `clock_skew` (a message's timestamp is its send time)."""
    last = config.start_ms + config.span_ms
    if max_future_skew_ms == 0 or last <= now_ms + max_future_skew_ms:
        return None
    from app.domain.utc import format_ms

    return (f"warning: event times run to {format_ms(last)}, more than LEDGER_MAX_FUTURE_SKEW_MS "
            f"({max_future_skew_ms} ms) after now: the decider will dead-letter those events as clock_skew "
            f"(pick an earlier --start)")


def parse_start(text: str) -> int:
    """Epoch milliseconds from an integer or an ISO-8601 time (UTC unless an offset is given)."""
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--start {text!r} is neither ISO-8601 nor epoch milliseconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _publish(items, config, connection, topic: str, rate: float | None) -> int:
    from tools.simulate.publish import PublishError, SimulateError, check_topic, publish

    try:
        check_topic(connection, topic)
    except SimulateError as exc:
        raise CommandError(str(exc)) from None
    with _progress(config.events, f"publishing to {topic}") as advance:
        try:
            stats = publish(items, connection, topic, rate, on_progress=advance, check=False)
        except PublishError as exc:
            raise CommandError(f"publishing to {topic} on {connection.bootstrap} failed: {exc}") from None
    target = f" (target {rate:g}/s)" if rate is not None else " (max rate)"
    print(f"published {stats.items} items to {topic} (seed {config.seed}): {_counts(stats.counts)}; "
          f"{stats.elapsed_s:.1f} s, {stats.rate:.0f} events/s{target}")
    return 0


def _write_jsonl(path: str, items, config) -> int:
    from tools.simulate.jsonl import write_jsonl

    to_stdout = path == "-"
    try:
        out = sys.stdout if to_stdout else open(path, "w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with _progress(config.events, f"writing {'stdout' if to_stdout else path}") as advance:
            stats = write_jsonl(items, out, on_progress=advance)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        if not to_stdout:
            out.close()
    print(f"wrote {stats.written} JSON lines to {'stdout' if to_stdout else path} (seed {config.seed}): "
          f"{_counts(stats.counts)}; skipped {stats.skipped} undecodable items (raw bytes have no JSON form); "
          f"{stats.elapsed_s:.1f} s, {stats.rate:.0f} events/s",
          file=sys.stderr if to_stdout else sys.stdout)
    return 0


def _counts(counts: dict[str, int]) -> str:
    labels = {"good": "good", "breaking": "limit-breaking", "duplicate": "duplicates",
              "malformed": "malformed", "undecodable": "undecodable"}
    return ", ".join(f"{counts.get(kind, 0)} {label}" for kind, label in labels.items())


@contextmanager
def _progress(total: int, description: str):
    """Yields `advance(done)`: a rich progress bar on stderr when it is a terminal, else a no-op."""
    if not sys.stderr.isatty():
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)

