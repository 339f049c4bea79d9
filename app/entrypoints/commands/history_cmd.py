"""`ledger history MEMBER`: every decided event of a member, in decision order, from the event store."""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys

from app.entrypoints.commands.errors import CommandError

PAGE = 1_000
ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

DESCRIPTION = """\
Print every decided event of a member (accepted and rejected) in decision order, as the event store
(Cassandra) keeps them: position (seq, sub), outcome, reason and detail, event type and id, occurred_at,
the member clock at decision, the event's fields and where it was read (topic, partition, offset).
A table, or with --json one JSON object per line (the read API's history shape). Reads Cassandra only."""


def register(sub) -> None:
    p = sub.add_parser("history", help="a member's decided events, from the event store",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("member", metavar="MEMBER", help="member_id")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="the first N events only (default: all)")
    p.set_defaults(handler=run)


def check_member(member_id: str) -> str:
    if not ID.match(member_id):
        raise CommandError(f"{member_id!r} is not a member id (1-64 characters from [A-Za-z0-9._:-])")
    return member_id


def run(args, settings) -> int:
    check_member(args.member)
    if args.limit < 0:
        raise CommandError("--limit must be >= 0 (0: all)")
    return asyncio.run(_history(args, settings))


async def _history(args, settings) -> int:
    from app import bootstrap
    from app.adapters.json_events import decision_to_json
    from app.service.ports import HistoryUnavailable

    history = bootstrap.history(settings)
    table = None if args.json else _Table(args.member)
    shown = 0
    try:
        after = None
        while True:
            want = PAGE if not args.limit else min(PAGE, args.limit - shown)
            page = await history.page(args.member, after, want)
            for d in page:
                if table is None:
                    print(json.dumps(decision_to_json(d), separators=(",", ":")), flush=False)
                else:
                    table.add(d)
            shown += len(page)
            if len(page) < want or (args.limit and shown >= args.limit):
                break
            after = page[-1].position
    except HistoryUnavailable as exc:
        raise CommandError(str(exc)) from None
    finally:
        await history.aclose()
    sys.stdout.flush()
    if shown == 0:
        raise CommandError(f"member {args.member} has no decided event in keyspace {settings.cassandra_keyspace}")
    if table is not None:
        table.print(shown, limited=bool(args.limit) and shown >= args.limit)
    return 0


class _Table:
    """Three columns that fit 80: the position, the outcome (reason and detail), and the event (type and
    id, time and clock, fields, source), which wraps."""

    def __init__(self, member_id: str):
        from rich.table import Table

        self.member_id = member_id
        self.table = Table(title=f"history of member {member_id}", title_justify="left", show_lines=True,
                           expand=True)
        self.table.add_column("seq.sub", justify="right", no_wrap=True)
        self.table.add_column("outcome", min_width=12, max_width=32)
        self.table.add_column("event", ratio=1)

    def add(self, d) -> None:
        from dataclasses import asdict

        from app.domain.history import ACCEPTED
        from app.domain.utc import format_ms

        if d.kind == ACCEPTED:
            outcome = "[green]accepted[/]"
        else:
            outcome = f"[red]{_escape(d.reason or '')}[/]\n{_escape(d.detail or '')}"
        fields = " ".join(f"{k}={v}" for k, v in asdict(d.event.payload).items() if v is not None)
        when = format_ms(d.event.occurred_at)
        if d.clock != d.event.occurred_at:
            when += f" (member clock {format_ms(d.clock)})"
        event = (f"[bold]{type(d.event.payload).__name__}[/] {_escape(d.event.event_id)}\n{when}\n"
                 f"{_escape(fields)}\n[dim]{_escape(d.source.topic)} partition {d.source.partition} "
                 f"offset {d.source.offset}[/]")
        self.table.add_row(f"{d.seq}.{d.sub}", outcome, event)

    def print(self, shown: int, limited: bool) -> None:
        from rich.console import Console

        console = Console(highlight=False)
        console.print(self.table)
        console.print(f"{shown:,} event(s)" + (" (--limit reached; there may be more)" if limited else ""))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
