"""`ledger replay`: rebuild every projection from the ledger into a fresh namespace, verify, switch."""
from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from contextlib import asynccontextmanager

from app.entrypoints import heap
from app.entrypoints.commands.errors import CommandError

MAX_LISTED = 50  # mismatches printed before "... and N more"
MAX_PARTITION_ROWS = 24  # more partitions than this: one overall bar only

DESCRIPTION = """\
Rebuild every projection (Redis views and Cassandra read models) from the ledger topic into a fresh
namespace, verify it member by member against the event store, then switch readers (the read API
and the live projector) to it with one atomic write of ledger:active-namespace, and apply the
ledger entries appended meanwhile. The live projector keeps serving the old namespace until the
switch. On a verification mismatch nothing is switched, the differences are listed and the exit
status is 1 (the new namespace is left for inspection).

A replay that stopped after its switch (its catch-up not done, or the drop of the old namespace with
--drop-old) is recorded next to the pointer: the next `ledger replay` finishes it instead of starting
another one. --drop-old deletes the old namespace once every live projector has acknowledged the new
one."""


def register(sub) -> None:
    p = sub.add_parser("replay", help="rebuild the projections from the ledger into a new namespace, verify, switch",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from-timestamp", type=int, metavar="MS",
                   help="read the ledger only from the entries whose Kafka timestamp is >= MS (epoch "
                        "milliseconds): members with entries from then on are rebuilt, their earlier history "
                        "read from the event store; members with no entry from then on are copied as they are "
                        "from the active namespace's Redis views (the verification still checks them; a full "
                        "replay rebuilds them)")
    p.add_argument("--namespace", metavar="NAME",
                   help="namespace to build (a-z, 0-9, _; at most 28); default: the next free vN after the "
                        "active one. It must not hold views yet")
    p.add_argument("--drop-old", action="store_true",
                   help="after the switch and the catch-up, once every live projector has acknowledged the new "
                        "namespace, delete the old namespace's Redis keys and drop its Cassandra tables")
    p.add_argument("--drop-timeout", type=float, default=60.0, metavar="S",
                   help="how long --drop-old waits for the live projectors (default 60); after it the old "
                        "namespace is kept and the exit status is 1")
    p.add_argument("--no-switch", action="store_true",
                   help="build and verify only; readers stay on the active namespace")
    p.add_argument("--concurrency", type=int, default=4, metavar="N",
                   help="chunks of 50 members written or verified at once in Cassandra (default 4)")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    if args.drop_old and args.no_switch:
        raise CommandError("--drop-old drops the namespace readers use unless it switches: drop --no-switch")
    if args.from_timestamp is not None and args.from_timestamp < 0:
        raise CommandError("--from-timestamp must be epoch milliseconds (>= 0)")
    if args.concurrency < 1:
        raise CommandError("--concurrency must be at least 1")
    if args.drop_timeout < 0:
        raise CommandError("--drop-timeout must be seconds (>= 0)")
    return asyncio.run(_replay(args, settings))


@asynccontextmanager
async def open_stores(settings):
    """The composition root's Stores of ``settings``; one-line errors when a store is unreachable
    (the Redis URL is never printed: it may carry a password)."""
    from app.bootstrap import Stores

    try:
        stores = await asyncio.to_thread(Stores.open, settings)
    except Exception as exc:
        raise CommandError(f"cannot connect to Cassandra at {settings.cassandra_hosts}: {exc}") from None
    try:
        try:
            await stores.redis.ping()
        except Exception as exc:
            raise CommandError(f"cannot connect to Redis: {type(exc).__name__}: {exc}") from None
        yield stores
    finally:
        await stores.aclose()


async def _replay(args, settings) -> int:
    from app.service.replay import ReplayError

    tty = sys.stdout.isatty()
    observer = RichObserver() if tty else PlainObserver()
    async with open_stores(settings) as stores:
        replay = stores.replay(observer, concurrency=args.concurrency, drop_timeout_s=args.drop_timeout)
        heap.settle()
        try:
            result = await replay.run(namespace=args.namespace, from_timestamp=args.from_timestamp,
                                      switch=not args.no_switch, drop_old=args.drop_old)
        except ReplayError as exc:
            raise CommandError(str(exc)) from None
        except Exception as exc:  # a store failed mid-way (after retries): say where things stand
            raise CommandError(f"{type(exc).__name__}: {exc}; {_where(replay.last_run)}") from None
        finally:
            observer.stop()
            replay.close()
    print_summary(result)
    verification = result.verification
    if verification is not None and not verification.ok:
        print_mismatches(verification)
        raise CommandError(f"verification failed: {len(verification.differing)} member(s) differ from the event "
                           f"store; readers stay on {result.old_ns}, namespace {result.new_ns} is left for inspection")
    return 0


def _where(run) -> str:
    if run is None:
        return "nothing was written"
    if run.switched:
        return (f"readers were switched from {run.old_ns} to {run.new_ns}: run `ledger replay` again to finish "
                f"this replay (catch-up{', drop' if run.drop_old else ''})")
    return f"readers stay on {run.old_ns}; namespace {run.new_ns} is incomplete"


# --- output -------------------------------------------------------------------------------


def print_summary(run) -> None:
    v = run.verification
    if run.resumed:
        outcome = f"finished the replay that switched readers {run.old_ns} → {run.new_ns}"
    elif run.switched:
        outcome = f"verified and switched readers {run.old_ns} → {run.new_ns}"
    elif v is not None and v.ok:
        outcome = f"verified; readers stay on {run.old_ns} (--no-switch)"
    else:
        outcome = f"NOT switched: verification failed; readers stay on {run.old_ns}"
    since = "" if run.from_timestamp is None else f" from timestamp {run.from_timestamp}"
    lines = [f"replay of {run.topic}{since} into namespace {run.new_ns}: {outcome}"]
    if not run.resumed:  # a resumed run read nothing but the catch-up
        lines += [
            f"  events read         {run.events_read:,} ({len(run.end)} partitions, {run.undecodable} undecodable)",
            f"  members             {run.members:,} ({run.members_rebuilt:,} rebuilt from the ledger"
            + (f", {run.members_copied:,} copied from {run.old_ns})" if run.from_timestamp is not None else ")"),
            f"  duplicates skipped  {run.duplicates:,}",
            f"  gaps filled         {run.gaps_filled:,} ({run.gap_entries:,} events from the event store)",
            f"  rebuild             {run.rebuild_seconds:.2f} s (read and fold {run.read_seconds:.2f} s), "
            f"{run.events_per_second:,.0f} events/s",
        ]
    if v is not None:
        lines.append(f"  verified            {v.checked:,} members against the event store in {v.seconds:.2f} s: "
                     + ("all equal" if v.ok else f"{len(v.differing):,} differ")
                     + (f", {len(v.behind)} behind by events decided meanwhile (topped up)" if v.behind else ""))
    if run.switched:
        lines.append(f"  caught up           {run.caught_up_entries:,} entries appended during the replay "
                     f"({run.caught_up_applied:,} applied)")
    if run.dropped:
        lines.append(f"  dropped             namespace {run.old_ns}: "
                     + ", ".join(f"{store} {n:,}" for store, n in run.dropped.items())
                     + f" (after {run.projectors} live projector(s) acknowledged {run.new_ns})")
    lines.append(f"  elapsed             {run.elapsed:.2f} s")
    print("\n".join(lines), flush=True)


def print_mismatches(report, limit: int | None = MAX_LISTED) -> None:
    """One line per member that differs, with every store's difference."""
    by_member: dict[str, list[str]] = {}
    for m in report.mismatches:
        by_member.setdefault(m.member_id, []).append(m.describe())
    members = sorted(by_member)
    shown = members if limit is None else members[:limit]
    for member_id in shown:
        print("DIFFERS " + "; ".join(by_member[member_id]), flush=True)
    if len(members) > len(shown):
        print(f"... and {len(members) - len(shown)} more member(s)", flush=True)


class PlainObserver:
    """Progress as plain lines (stdout is not a terminal): at most one line per second and step."""

    def __init__(self, out=None, interval_s: float = 1.0):
        self.out = out or sys.stdout
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last = 0.0
        self._total = 0
        self._began = time.monotonic()
        self._label = ""
        self._end: dict[int, int] = {}

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def reading(self, run) -> None:
        self._total = run.events_in_range
        self._end = dict(run.end)
        self._began = time.monotonic()
        since = "the beginning" if run.from_timestamp is None else f"timestamp {run.from_timestamp}"
        self._print(f"replay: reading {run.topic} from {since}: {len(run.end)} partitions, {self._total:,} entries "
                    f"into namespace {run.new_ns} (active: {run.old_ns})")

    def read_progress(self, positions: dict[int, int], events: int) -> None:
        with self._lock:
            now = time.monotonic()
            if events < self._total and now - self._last < self.interval_s:
                return
            self._last = now
        elapsed = max(now - self._began, 1e-9)
        rate = events / elapsed
        eta = (self._total - events) / rate if rate > 0 else 0.0
        done = sum(1 for p, end in self._end.items() if positions.get(p, end) >= end)
        pct = 100.0 * events / self._total if self._total else 100.0
        self._print(f"  read {events:,}/{self._total:,} entries ({pct:.0f}%), {rate:,.0f} events/s, "
                    f"ETA {eta:.0f}s; partitions done {done}/{len(self._end)}: "
                    + " ".join(f"{p}:{positions.get(p, 0)}/{end}" for p, end in sorted(self._end.items())))

    def phase(self, label: str, total: int, detail: str = "") -> None:
        self._label = label
        self._last = time.monotonic()
        self._print(f"replay: {label}: {detail}" if detail else f"replay: {label}")

    def advance(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= self.interval_s:
            self._last = now
            self._print(f"  {self._label} {done:,}/{total:,}")

    def note(self, message: str) -> None:
        self._print(f"replay: {message}")

    def stop(self) -> None:
        pass


class RichObserver:
    """A rich progress display: an overall bar of the ledger entries with events/s and ETA, one bar per
    partition (offsets done/end), then one bar per later step. Fits 80 columns."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        count_column, rate_column = _columns()
        self.console = Console(highlight=False)
        self.progress = Progress(
            TextColumn("{task.description}", table_column=_fixed(9)), BarColumn(bar_width=22), count_column(),
            rate_column(), TextColumn("ETA"), TimeRemainingColumn(compact=True),
            console=self.console, refresh_per_second=4,
        )
        self._overall = None
        self._partitions: dict[int, object] = {}
        self._task = None
        self._started = False

    def _ensure_started(self) -> None:
        if not self._started:
            self.progress.start()
            self._started = True

    def reading(self, run) -> None:
        self._ensure_started()
        since = "the beginning" if run.from_timestamp is None else f"timestamp {run.from_timestamp}"
        self.console.print(f"replay: {run.topic} from {since}, {run.events_in_range:,} entries")
        self.console.print(f"replay: building namespace [bold]{run.new_ns}[/] (active: {run.old_ns})")
        self._overall = self.progress.add_task("ledger", total=max(run.events_in_range, 1), rate=True)
        if len(run.end) <= MAX_PARTITION_ROWS:
            for p in sorted(run.end):
                start, end = run.start.get(p, run.end[p]), run.end[p]
                self._partitions[p] = self.progress.add_task(
                    f" p{p}", total=max(end - start, 1), completed=0 if end > start else 1, offsets=(start, end),
                    start_offset=start)

    def read_progress(self, positions: dict[int, int], events: int) -> None:
        self.progress.update(self._overall, completed=events)
        for p, task in self._partitions.items():
            fields = self.progress.tasks[task].fields
            start, end = fields["start_offset"], fields["offsets"][1]
            position = positions.get(p, start)
            if end > start:
                self.progress.update(task, completed=position - start, offsets=(position, end))

    def _finish(self, task) -> None:
        if task is not None:
            self.progress.update(task, completed=self.progress.tasks[task].total)

    def phase(self, label: str, total: int, detail: str = "") -> None:
        self._ensure_started()
        self._finish(self._overall)
        for task in self._partitions.values():
            self._finish(task)
        self._finish(self._task)
        if detail:
            self.console.print(f"replay: {label}: {detail}")
        self._task = self.progress.add_task(label, total=max(total, 1), completed=0 if total else 1, units=total)

    def advance(self, done: int, total: int) -> None:
        if self._task is not None:
            self.progress.update(self._task, completed=done, total=max(total, 1), units=total)

    def note(self, message: str) -> None:
        self.console.print(f"replay: {message}")

    def stop(self) -> None:
        if self._started:
            self._finish(self._task)
            self.progress.stop()


def _fixed(width: int):
    from rich.table import Column
    return Column(width=width, no_wrap=True)


def _columns():
    from rich.progress import ProgressColumn
    from rich.table import Column
    from rich.text import Text

    class CountColumn(ProgressColumn):
        """Offsets done/end for a partition, done/total otherwise."""

        def __init__(self):
            super().__init__(table_column=Column(justify="right", no_wrap=True))

        def render(self, task) -> Text:
            offsets = task.fields.get("offsets")
            if offsets is not None:
                return Text(f"{offsets[0]:,}/{offsets[1]:,}", style="cyan")
            total = task.fields.get("units", int(task.total or 0))  # a step of 0 units shows 0/0
            return Text(f"{min(int(task.completed), total):,}/{total:,}", style="cyan")

    class RateColumn(ProgressColumn):
        """events/s of the overall read (blank on other rows)."""

        def __init__(self):
            super().__init__(table_column=Column(justify="right", no_wrap=True))

        def render(self, task) -> Text:
            if not task.fields.get("rate"):
                return Text("")
            speed = task.finished_speed or task.speed
            return Text("-- events/s" if speed is None else f"{speed:,.0f} events/s", style="green")

    return CountColumn, RateColumn
