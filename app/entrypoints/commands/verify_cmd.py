"""`ledger verify`: compare the live views with a fold of the event store, member by member."""
from __future__ import annotations

import argparse
import asyncio
import sys

from app.entrypoints.commands.errors import CommandError

DESCRIPTION = """\
Compare a projection namespace (default: the active one) with the event store, the source of
truth: for every member of the event store and every member present in the namespace, the Redis
view and the Cassandra summary row must have the member's seq
and the same digest (app.domain.views.digest) as the fold of its stored history. Prints each member
that differs and how (missing, unknown, seq, digest); exit status 1 when any does, 0 otherwise.
Members behind the event store or missing are checked again for up to --settle seconds, so the
live projector's normal lag is not reported."""


def register(sub) -> None:
    p = sub.add_parser("verify", help="compare the live views and read models with the event store",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--namespace", metavar="NAME", help="namespace to check (default: the active one)")
    p.add_argument("--settle", type=float, default=5.0, metavar="SECONDS",
                   help="how long members behind the event store may take to catch up (default 5; 0: no wait)")
    p.add_argument("--concurrency", type=int, default=4, metavar="N",
                   help="chunks of 50 members checked at once (default 4)")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    if args.settle < 0:
        raise CommandError("--settle must be >= 0")
    if args.concurrency < 1:
        raise CommandError("--concurrency must be at least 1")
    return asyncio.run(_verify(args, settings))


async def _verify(args, settings) -> int:
    from app.entrypoints.commands.replay_cmd import open_stores, print_mismatches

    async with open_stores(settings) as stores:
        ns = args.namespace or await stores.pointer().active()
        namespace_stores = stores.namespace_stores()
        try:
            for store in namespace_stores:
                store.check(ns)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not any([ns in await store.namespaces() for store in namespace_stores]):
            raise CommandError(f"namespace {ns} holds no views and no read-model tables")
        found = await asyncio.gather(stores.event_store().member_ids(),
                                     *(store.members(ns) for store in namespace_stores))
        members = set().union(*found)
        verifier = stores.verifier(ns, args.concurrency)
        tty = sys.stdout.isatty()
        try:
            if tty:
                from rich.progress import Progress

                with Progress(transient=True) as progress:
                    task = progress.add_task(f"verifying namespace {ns}", total=max(len(members), 1))
                    report = await verifier.verify(ns, members, settle_s=args.settle,
                                                   progress=lambda done, _: progress.update(task, completed=done))
            else:
                report = await verifier.verify(ns, members, settle_s=args.settle)
        except Exception as exc:  # a store failed (after retries)
            raise CommandError(f"verification of namespace {ns} aborted: {type(exc).__name__}: {exc}") from None
    print_mismatches(report, limit=None)  # every member that differs
    print(("OK " if report.ok else "FAILED ") + report.summary(), flush=True)
    return 0 if report.ok else 1
