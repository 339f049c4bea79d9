"""`ledger stack up|down|status|logs|reset`, and one service at a time: `ledger stack start|stop|kill|
freeze|thaw NAME` (for drills and the fault tests)."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from app.entrypoints.commands.errors import CommandError
from tools.stack import manager
from tools.stack.maven import InstallError


def register(sub) -> None:
    p = sub.add_parser("stack", help="run the local Kafka, Cassandra and Redis")
    p.add_argument("action", choices=["up", "down", "status", "logs", "reset", "start", "stop", "kill", "freeze",
                                      "thaw"])
    p.add_argument("service", nargs="?", choices=["kafka", "cassandra", "redis"],
                   help="up/down/logs: one service (default all); start/stop/kill/freeze/thaw: required")
    p.add_argument("-n", "--lines", type=int, default=40, help="logs: how many lines")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    stack_dir = settings.stack_dir
    if args.action in ("start", "stop", "kill", "freeze", "thaw") and not args.service:
        raise CommandError(f"`ledger stack {args.action}` needs a service: kafka, cassandra or redis")
    try:
        if args.action in ("up", "start"):
            manager.up(stack_dir, only=args.service)
        elif args.action in ("down", "stop"):
            manager.down(stack_dir, only=args.service)
        elif args.action in ("kill", "freeze", "thaw"):
            manager.signal_service(stack_dir, args.service, args.action)
        elif args.action == "reset":
            manager.reset(stack_dir)
        elif args.action == "logs":
            print(manager.logs(stack_dir, args.service, args.lines))
        else:
            return _print_status(manager.status(stack_dir))
    except (manager.StackError, InstallError) as exc:
        raise CommandError(str(exc)) from None
    return 0


def _print_status(health) -> int:
    table = Table("service", "pid", "port", "health", "detail")
    for h in health:
        table.add_row(h.name, str(h.pid or "-"), str(h.port),
                      "[green]healthy[/]" if h.healthy else "[red]down[/]", h.detail)
    Console().print(table)
    return 0 if all(h.healthy for h in health) else 1
