"""`ledger dlq list|show|redrive`: read the dead letters of LEDGER_DLQ_TOPIC and republish them once
their cause is fixed."""
from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime

from app.entrypoints.commands.errors import CommandError

MAX_NOTES = 100  # lines about single dead letters (skipped, or what a dry run would do)

REDRIVE_DESCRIPTION = """\
Republish dead letters to the events topic (LEDGER_EVENTS_TOPIC) once the cause is fixed (a worker
restarted with a relaxed LEDGER_MAX_FUTURE_SKEW_MS, a schema deployed to the workers, ...): the
original key and value bytes, into the source partition, with the source message's timestamp (so
the clock-skew guard judges it as before; --new-timestamp uses the current time), the original
message's own headers, and the headers redrive.count (1 more than the dead letter's), redrive.from
(the dead letter's partition:offset) and redrive.at (ms).

Skipped, and said so:
  - truncated dead letters (header dlq.truncated): they hold only a prefix of the original bytes;
  - dead letters of a message that was redriven already (redrive.count >= 1): it failed again, so
    its cause is not fixed; --force redrives them anyway (redrive.count goes on counting).

Safe to repeat: the decider decides each event id once, so an event redriven twice (or redriven
after it was decided) is a duplicate and changes nothing; running the same redrive again republishes
the same dead letters again (narrow it with --since/--until)."""


def register(sub) -> None:
    p = sub.add_parser("dlq", help="list, show and redrive the dead letters")
    actions = p.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")

    ls = actions.add_parser("list", help="the newest dead letters, one line each")
    _selection_options(ls, until=False)
    ls.add_argument("--limit", type=int, default=50, metavar="N", help="show the newest N (default 50; 0: all)")
    ls.add_argument("--json", action="store_true", help="a JSON array, details in full")
    ls.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="one dead letter: headers, key, value in hex and decoded")
    show.add_argument("position", metavar="PARTITION:OFFSET")
    show.add_argument("--bytes", type=int, default=1024, metavar="N", help="hex dump at most N bytes (default 1024)")
    show.set_defaults(handler=run_show)

    redrive = actions.add_parser("redrive", help="republish dead letters to the events topic",
                                 description=REDRIVE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    _selection_options(redrive, until=True)
    redrive.add_argument("--dry-run", action="store_true", help="say what would be redriven; publish nothing")
    redrive.add_argument("--force", action="store_true", help="redrive dead letters that were redriven already too")
    redrive.add_argument("--new-timestamp", action="store_true",
                         help="give the republished messages the current time, not the original timestamp")
    redrive.set_defaults(handler=run_redrive)


def _selection_options(p, *, until: bool) -> None:
    p.add_argument("--code", action="append", default=[], metavar="CODE",
                   help="only dead letters with this error.code (repeatable)")
    p.add_argument("--since", type=int, metavar="MS", help="only dead letters written at or after MS (epoch ms)")
    if until:
        p.add_argument("--until", type=int, metavar="MS", help="only dead letters written before MS (epoch ms)")


def _selection(args):
    from app.adapters.kafka.dead_letters import Selection

    since, until = args.since, getattr(args, "until", None)
    for name, v in (("--since", since), ("--until", until)):
        if v is not None and v < 0:
            raise CommandError(f"{name} must be epoch milliseconds (>= 0)")
    if since is not None and until is not None and until <= since:
        raise CommandError("--until must be after --since")
    codes = frozenset(c.strip() for arg in args.code for c in arg.split(",") if c.strip())
    return Selection(codes, since, until)


def _reader(settings):
    from app import bootstrap
    from app.service.ports import LedgerReadError

    try:
        return bootstrap.dead_letter_reader(settings)
    except LedgerReadError as exc:
        raise CommandError(str(exc)) from None


def _read(settings, selection):
    """(reader's total messages in range, generator of DeadLetterRecord batches)."""
    from app.adapters.kafka.dead_letters import DeadLetterRecord
    from app.service.ports import LedgerReadError

    reader = _reader(settings)
    try:
        end = reader.end_offsets()
        start = reader.beginning_offsets() if selection.since is None else reader.offsets_for_time(selection.since)
    except LedgerReadError as exc:
        reader.close()
        raise CommandError(str(exc)) from None
    total = sum(max(0, end[p] - start.get(p, end[p])) for p in end)

    def batches():
        try:
            for batch in reader.read(start, end):
                yield [DeadLetterRecord.from_message(m) for m in batch]
        except LedgerReadError as exc:
            raise CommandError(str(exc)) from None
        finally:
            reader.close()
    return total, batches()


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- list ------------------------------------------------------------------------------------


def run_list(args, settings) -> int:
    from app.adapters.kafka.dead_letters import event_id

    if args.limit < 0:
        raise CommandError("--limit must be >= 0")
    selection = _selection(args)
    _, batches = _read(settings, selection)
    newest: list = []  # a heap of (timestamp, partition, offset, row) of the newest --limit
    matched, by_code = 0, Counter()
    for batch in batches:
        for dl in batch:
            if not selection.matches(dl):
                continue
            matched += 1
            by_code[dl.code] += 1
            row = {
                "position": dl.position, "partition": dl.partition, "offset": dl.offset, "timestamp": dl.timestamp,
                "time": _time(dl.timestamp), "kind": dl.kind, "code": dl.code, "detail": dl.detail,
                "source_topic": dl.source_topic, "source_partition": dl.source_partition,
                "source_offset": dl.source_offset, "event_id": event_id(dl.value), "truncated": dl.truncated,
                "redrive_count": dl.redrive_count,
            }
            item = (dl.timestamp or 0, dl.partition, dl.offset, row)
            if not args.limit:
                newest.append(item)
            elif len(newest) < args.limit:
                heapq.heappush(newest, item)
            else:
                heapq.heappushpop(newest, item)
    rows = [item[3] for item in sorted(newest, key=lambda i: i[:3])]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        flags = ("  [truncated]" if r["truncated"] else "") + (
            f"  [redriven {r['redrive_count']}x]" if r["redrive_count"] else "")
        source = f"{r['source_topic']}[{r['source_partition']}]@{r['source_offset']}"
        detail = r["detail"] if len(r["detail"]) <= 120 else r["detail"][:117] + "..."
        print(f"{r['position']:>10}  {r['time']}  {r['code']:<20}  {source}  event {r['event_id'] or '-'}"
              f"{flags}\n{'':>12}{detail}")
    codes = ", ".join(f"{c} {n:,}" for c, n in by_code.most_common()) or "none"
    shown = f"; showing the newest {len(rows):,}" if len(rows) < matched else ""
    print(f"{matched:,} dead letter(s) in {settings.dlq_topic} (by code: {codes}){shown}")
    return 0


# --- show ------------------------------------------------------------------------------------


def _position(text: str) -> tuple[int, int]:
    try:
        partition, offset = (int(x) for x in text.split(":"))
    except ValueError:
        raise CommandError(f"expected PARTITION:OFFSET (e.g. 3:17), got {text!r}") from None
    if partition < 0 or offset < 0:
        raise CommandError(f"expected PARTITION:OFFSET with numbers >= 0, got {text!r}")
    return partition, offset


def run_show(args, settings) -> int:
    from app.adapters.kafka.dead_letters import (
        DeadLetterRecord,
        decode_value,
        event_id,
        header_text,
        hex_dump,
        to_json,
    )
    from app.service.ports import LedgerReadError

    partition, offset = _position(args.position)
    reader = _reader(settings)
    try:
        marks = reader.watermarks()
        if partition not in marks:
            raise CommandError(f"{settings.dlq_topic} has no partition {partition} (it has {len(marks)})")
        low, high = marks[partition]
        if not low <= offset < high:
            raise CommandError(f"no dead letter at {partition}:{offset}: partition {partition} holds offsets "
                               + (f"{low} to {high - 1}" if high > low else "none"))
        found = [m for batch in reader.read({partition: offset}, {partition: offset + 1}) for m in batch]
    except LedgerReadError as exc:
        raise CommandError(str(exc)) from None
    finally:
        reader.close()
    if not found:
        raise CommandError(f"no dead letter at {partition}:{offset} (deleted or compacted away)")
    dl = DeadLetterRecord.from_message(found[0])
    print(f"dead letter {settings.dlq_topic} {dl.position}, written {_time(dl.timestamp)} ({dl.timestamp})")
    print("headers:")
    width = max((len(k) for k, _ in dl.headers), default=0)
    for k, v in dl.headers:
        print(f"  {k:<{width}}  {header_text(v)}")
    key = dl.key
    print("key: " + ("(null)" if key is None else f"{header_text(key)} ({len(key)} bytes)"))
    if dl.value is None:
        print("value: (null)")
        return 0
    print(f"value: {len(dl.value):,} bytes" + (" (truncated: a prefix of the original)" if dl.truncated else ""))
    for line in hex_dump(dl.value, max(0, args.bytes)):
        print("  " + line)
    decoded = decode_value(dl.value)
    if isinstance(decoded, str):
        print(f"avro: cannot decode: {decoded}")
    else:
        label, datum = decoded
        print(f"avro: {label} (the writer schema, as written)")
        print("\n".join("  " + line for line in to_json(datum).splitlines()))
    print(f"event id: {event_id(dl.value) or '-'}")
    return 0


# --- redrive ---------------------------------------------------------------------------------


def run_redrive(args, settings) -> int:
    from app import bootstrap
    from app.adapters.kafka.dead_letters import redrive_record, refusal
    from app.adapters.kafka.producer import PublishError

    selection = _selection(args)
    total, batches = _read(settings, selection)
    partitions = _partitions(settings)
    producer = None if args.dry_run else bootstrap.producer(settings)
    redriven, skipped, not_selected, read = Counter(), Counter(), 0, 0
    notes: list[str] = []
    progress = _Progress(total, sys.stdout.isatty(), "dry run" if args.dry_run else "redrive")
    verb = "would be redriven" if args.dry_run else "redriven"
    try:
        for batch in batches:
            records = []
            now = int(time.time() * 1000)
            for dl in batch:
                read += 1
                if not selection.matches(dl):
                    not_selected += 1
                    continue
                why = refusal(dl, force=args.force)
                if why is not None:
                    skipped[why[0]] += 1
                    notes.append(f"skipped {dl.position} ({dl.code}): {why[0]}: {why[1]}")
                    continue
                record = redrive_record(dl, settings.events_topic, now, keep_timestamp=not args.new_timestamp,
                                        partitions=partitions)
                records.append((dl, record))
                if args.dry_run:
                    notes.append(f"would redrive {dl.position} ({dl.code}) to {record.topic}"
                                 f"[{'by key' if record.partition is None else record.partition}]"
                                 f" with timestamp {_time(record.timestamp) if record.timestamp else 'now'}")
            if producer is not None and records:
                try:
                    producer.produce_all([r for _, r in records])
                except PublishError as exc:
                    done = sum(redriven.values())
                    raise CommandError(f"publishing to {settings.events_topic} failed after {done} redriven: "
                                       f"{exc}; run the same redrive again (a message redriven twice is a "
                                       f"duplicate)") from None
            for dl, _ in records:
                redriven[dl.code] += 1
            progress.update(read, sum(redriven.values()), sum(skipped.values()))
    finally:
        progress.stop()
        if producer is not None:
            producer.close()
    for line in notes[:MAX_NOTES]:
        print(line)
    if len(notes) > MAX_NOTES:
        print(f"... and {len(notes) - MAX_NOTES:,} more (narrow with --code, --since, --until)")
    codes = ", ".join(f"{c} {n:,}" for c, n in redriven.most_common())
    why = ", ".join(f"{r} {n:,}" for r, n in skipped.most_common())
    print(f"{'dry run: ' if args.dry_run else ''}{sum(redriven.values()):,} dead letter(s) {verb} from "
          f"{settings.dlq_topic} to {settings.events_topic}" + (f" ({codes})" if codes else "")
          + f"; {sum(skipped.values()):,} skipped" + (f" ({why})" if why else "")
          + f"; {not_selected:,} not selected; {read:,} read")
    if skipped.get("truncated"):
        print("truncated dead letters cannot be redriven: they hold only a prefix of the original bytes")
    return 0


def _partitions(settings) -> int | None:
    from app import bootstrap
    from app.adapters.kafka import topic_admin

    try:
        described = topic_admin.describe(bootstrap.kafka_admin(settings), [settings.events_topic])
    except Exception as exc:
        raise CommandError(f"cannot read topic {settings.events_topic} from {settings.kafka_bootstrap}: {exc}") from None
    if settings.events_topic not in described:
        raise CommandError(f"topic {settings.events_topic} does not exist")
    return described[settings.events_topic].partitions


class _Progress:
    """A rich progress bar on a terminal (dead letters read, redriven, skipped), else nothing."""

    def __init__(self, total: int, tty: bool, label: str):
        self._progress = None
        if not tty:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("redriven {task.fields[redriven]:,} skipped {task.fields[skipped]:,}"),
                                  TimeRemainingColumn(), transient=False)
        self._task = self._progress.add_task(label, total=max(total, 1), redriven=0, skipped=0,
                                             completed=0 if total else 1)
        self._progress.start()

    def update(self, read: int, redriven: int, skipped: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=read, redriven=redriven, skipped=skipped)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
