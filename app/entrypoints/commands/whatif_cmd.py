"""`ledger whatif --policy FILE`: decide members' recorded events again under a policy and report
what would change. Reads the event store (Cassandra) only; writes nothing anywhere."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys

from app.entrypoints.commands.errors import CommandError
from app.entrypoints.commands.history_cmd import check_member

DESCRIPTION = """\
Decide each member's recorded events again, in the order they were decided, from the empty state
with the limits of a policy file (YAML or JSON; see the README), and compare with the recorded
outcomes. Reports the events re-decided, the flips by transition (accepted -> REASON, REASON ->
accepted, REASON -> OTHER), the members affected, the change in active downloads and devices in
use at each member's final clock, and the members with the most flips with their first flipped
event. Members: --member and --members-file, else every member of the event store (streamed);
--sample N draws N of them at random. With --from, the policy takes effect at that member clock
(earlier decisions keep their recorded outcome); with --to, decisions from then on are not read.
Reads Cassandra only and writes nothing: not to Kafka, Cassandra or Redis."""


def register(sub) -> None:
    p = sub.add_parser("whatif", help="re-decide recorded events under a policy file, report what changes",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", required=True, metavar="FILE", help="the policy: YAML, or JSON when it ends in .json")
    p.add_argument("--member", action="append", default=[], metavar="ID", help="a member to include (repeatable)")
    p.add_argument("--members-file", metavar="F", help="members to include, one id per line ('#' comments)")
    p.add_argument("--sample", type=int, metavar="N", help="N members drawn at random from the members chosen")
    p.add_argument("--seed", type=int, help="seed of --sample (default: random)")
    p.add_argument("--from", dest="from_ms", type=int, metavar="MS",
                   help="the policy takes effect at this member clock (epoch ms)")
    p.add_argument("--to", dest="to_ms", type=int, metavar="MS", help="stop at this member clock (epoch ms)")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.add_argument("--examples", type=int, default=10, metavar="N", help="members shown as examples (default 10)")
    p.add_argument("--concurrency", type=int, default=32, metavar="N",
                   help="members re-decided at once (default 32: their page reads overlap)")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    from app.adapters.policy_file import PolicyError, load_policy

    if args.sample is not None and args.sample < 1:
        raise CommandError("--sample must be at least 1")
    if args.examples < 0 or args.concurrency < 1:
        raise CommandError("--examples must be >= 0 and --concurrency at least 1")
    if args.from_ms is not None and args.to_ms is not None and args.to_ms <= args.from_ms:
        raise CommandError("--to must be after --from")
    for member_id in args.member:
        check_member(member_id)
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        raise CommandError(str(exc)) from None
    if args.members_file:
        try:
            open(args.members_file, encoding="utf-8").close()
        except OSError as exc:
            raise CommandError(f"cannot read {args.members_file}: {exc.strerror}") from None
    return asyncio.run(_whatif(args, settings, policy))


def _file_members(path: str):
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            member_id = line.split("#", 1)[0].strip()
            if not member_id:
                continue
            try:
                yield check_member(member_id)
            except CommandError as exc:
                raise CommandError(f"{path} line {number}: {exc}") from None


def _chosen(args):
    yield from args.member
    if args.members_file:
        yield from _file_members(args.members_file)


async def _whatif(args, settings, policy) -> int:
    from app import bootstrap
    from app.service.ports import HistoryUnavailable
    from app.service.whatif import Window, sample

    history = bootstrap.history(settings)
    service = bootstrap.whatif(history, concurrency=args.concurrency)
    window = Window(args.from_ms, args.to_ms)
    try:
        members = _chosen(args) if args.member or args.members_file else history.stream_member_ids()
        total = None
        if args.sample is not None:
            members = await sample(members, args.sample, args.seed)
            total = len(members)
        elif args.member and not args.members_file:
            total = len(args.member)
        with _Progress(total) as progress:
            report = await service.run(policy, members, window=window, examples=args.examples,
                                       progress=progress.update)
    except HistoryUnavailable as exc:
        raise CommandError(str(exc)) from None
    finally:
        await history.aclose()
    if args.json:
        print(json.dumps({"policy": args.policy, "from_ms": args.from_ms, "to_ms": args.to_ms,
                          **report.to_dict()}), flush=True)
    else:
        print_report(report, args)
    return 0


class _Progress:
    """A rich progress bar on stderr when it is a terminal (stdout stays the report); nothing otherwise."""

    def __init__(self, total: int | None):
        self.total = total
        self.progress = None
        self.task = None

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(SpinnerColumn(), TextColumn("what-if"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("members, {task.fields[events]:,} events"), TimeElapsedColumn(),
                                     console=Console(stderr=True), transient=True)
            self.progress.start()
            self.task = self.progress.add_task("what-if", total=self.total, events=0)
        return self

    def update(self, members: int, events: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=members, events=events)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


def print_report(report, args) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from app.domain.utc import format_ms
    from app.service.whatif import transition_label

    console = Console(highlight=False)
    window = ""
    if args.from_ms is not None:
        window += f", policy from {format_ms(args.from_ms)}"
    if args.to_ms is not None:
        window += f", up to {format_ms(args.to_ms)}"
    nothing = "without a decision before --to" if args.to_ms is not None else "without history"
    unknown = f" ({report.unknown:,} {nothing})" if report.unknown else ""
    console.print(f"what-if of {escape(args.policy)} over {report.members:,} member(s){unknown}{window}")
    console.print(f"  events re-decided   {report.events:,} in {report.seconds:.2f} s "
                  f"({report.events_per_second:,.0f} events/s)")
    console.print(f"  flips               {report.flip_total:,} in {report.members_affected:,} member(s)")
    if report.flips:
        transitions = Table(show_header=True, box=None, padding=(0, 2))
        transitions.add_column("transition")
        transitions.add_column("events", justify="right")
        for (recorded, outcome), n in sorted(report.flips.items(), key=lambda i: (-i[1], i[0])):
            transitions.add_row(transition_label(recorded, outcome), f"{n:,}")
        console.print(transitions)
    for label, (before, after) in (("active downloads", report.active_downloads),
                                   ("devices in use", report.devices_in_use)):
        console.print(f"  {label:<20}{before:,} -> {after:,} ({after - before:+,}) at each member's last clock")
    if report.examples:
        examples = Table(title="members with the most flips, and the first", title_justify="left", box=None,
                         padding=(0, 2))
        for name in ("member", "flips", "first flipped event", "recorded -> under the policy"):
            examples.add_column(name)
        for e in report.examples:
            f = e.first
            examples.add_row(escape(e.member_id), f"{e.flip_count:,}",
                             f"{f.position[0]}.{f.position[1]} {type(f.event.payload).__name__} "
                             f"{escape(f.event.event_id)} at {format_ms(f.clock)}",
                             escape(transition_label(f.recorded, f.outcome) + (f": {f.detail}" if f.detail else "")))
        console.print(examples)
