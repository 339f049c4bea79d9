"""`ledger stack up|down|status|logs|reset|env [--profile local|cluster|secure]`, `ledger stack
provision --profile secure` (apply deploy/security/ again, e.g. after `ledger migrate`), and one service at a time:
`ledger stack start|stop|kill|freeze|thaw NAME` (for drills and the fault tests). On the cluster
profile NAME is a node: kafka-1..3, cassandra-1..3, redis-17000..17005."""
from __future__ import annotations

import shlex

from rich.console import Console
from rich.table import Table

from app.entrypoints.commands.errors import CommandError
from tools.stack import cluster_nodes, credentials, manager, secure_profile
from tools.stack.maven import InstallError


def register(sub) -> None:
    p = sub.add_parser("stack", help="run the local Kafka, Cassandra and Redis (one node each, or a cluster of each)")
    p.add_argument("action", choices=["up", "down", "status", "logs", "reset", "start", "stop", "kill", "freeze",
                                      "thaw", "env", "provision"])
    p.add_argument("service", nargs="?",
                   help="up/down/logs: one service (default all); start/stop/kill/freeze/thaw: required. local: "
                        "kafka, cassandra, redis; cluster: kafka-1..3, cassandra-1..3, redis-17000..17005")
    p.add_argument("--profile", choices=manager.PROFILES, default=None,
                   help="default: the profile of LEDGER_STACK_DIR (what `ledger stack env` sets), else local. "
                        "local: one node of each in .stack; cluster: 3 Kafka, 3 Cassandra and a 6-node Redis "
                        "Cluster in .stack-cluster; secure: one node of each with TLS, passwords and per-role "
                        "ACLs in .stack-secure (each beside the others)")
    p.add_argument("--principal", choices=credentials.PRINCIPALS, default="admin",
                   help="env --profile secure: whose credentials the variables name (default admin)")
    p.add_argument("-n", "--lines", type=int, default=40, help="logs: how many lines")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    profile = getattr(args, "profile", None) or manager.profile_of(settings.stack_dir)
    stack_dir = manager.stack_dir_of(settings.stack_dir, profile)
    if args.action in ("start", "stop", "kill", "freeze", "thaw") and not args.service:
        raise CommandError(f"`ledger stack {args.action}` needs a service: "
                           + ", ".join(s.name for s in manager.services(stack_dir)))
    try:
        if args.action in ("up", "start"):
            ready = manager.up(stack_dir, only=args.service, settings=settings)
            if profile == "cluster" and not args.service:
                print(f"cluster profile ready in {ready['total']:.1f}s; use it with:")
                print(_env_lines())
            if profile == "secure" and not args.service:
                print(f"secure profile ready in {ready['total']:.1f}s; use it as admin with:")
                print('eval "$(ledger stack env --profile secure)"   # --principal NAME for a role')
        elif args.action == "provision":
            manager.provision(stack_dir, settings, only=args.service)
        elif args.action in ("down", "stop"):
            manager.down(stack_dir, only=args.service)
        elif args.action in ("kill", "freeze", "thaw"):
            manager.signal_service(stack_dir, args.service, args.action)
        elif args.action == "reset":
            manager.reset(stack_dir)
        elif args.action == "logs":
            print(manager.logs(stack_dir, args.service, args.lines))
        elif args.action == "env":
            if profile == "secure":
                print(_export(secure_profile.client_env(stack_dir, args.principal)))
            elif profile == "cluster":
                print(_env_lines())
            else:
                raise CommandError("`ledger stack env` is for --profile cluster or secure (the local profile is "
                                   "the default)")
        else:
            return _print_status(manager.status(stack_dir))
    except (manager.StackError, InstallError) as exc:
        raise CommandError(str(exc)) from None
    return 0


def _env_lines() -> str:
    return _export(cluster_nodes.client_env())


def _export(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


def _print_status(health) -> int:
    table = Table("service", "pid", "address", "memory", "health", "detail")
    for h in health:
        table.add_row(h.name, str(h.pid or "-"), f"{h.host}:{h.port}",
                      f"{h.rss_mb:.0f} MiB" if h.rss_mb is not None else "-",
                      "[green]healthy[/]" if h.healthy else "[red]down[/]", h.detail)
    Console().print(table)
    total = sum(h.rss_mb or 0 for h in health)
    if total:
        Console().print(f"memory of the running services: {total / 1024:.2f} GiB")
    return 0 if all(h.healthy for h in health) else 1
