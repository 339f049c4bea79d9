"""The `ledger` command. Each subcommand lives in its own module and registers itself here.

Errors a user can cause end as one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from app.config import Settings
from app.entrypoints import commands


def registry() -> list:
    """The runtime's commands, then the developer tools' when that package is installed (the only
    place the runtime reaches for it: workers, the API and the services never import it)."""
    try:
        tools_cli = importlib.import_module("tools.cli")
    except ModuleNotFoundError as exc:
        if exc.name not in ("tools", "tools.cli"):
            raise
        return list(commands.REGISTRY)
    return list(commands.REGISTRY) + list(tools_cli.REGISTRY)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ledger", description="Download Ledger: stack, topics, schema, workers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in registry():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
        return int(args.handler(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except commands.CommandError as exc:
        print(f"ledger {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
