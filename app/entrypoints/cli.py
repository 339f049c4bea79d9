"""The `ledger` command. Each subcommand lives in its own module and registers itself here.

Errors a user can cause end as one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pydantic import ValidationError

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
    except ValidationError as exc:
        print(f"ledger {args.command}: invalid settings: {settings_problems(exc)}", file=sys.stderr)
        return 2
    try:
        return int(args.handler(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except commands.CommandError as exc:
        print(f"ledger {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        if not environmental(exc):
            raise
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        print(f"ledger {args.command}: {type(exc).__name__}: {detail} (is the stack up? `ledger stack status`)",
              file=sys.stderr)
        return 1


def settings_problems(exc: ValidationError) -> str:
    """What is wrong with the LEDGER_* settings, on one line, without the values given (one may be a
    password; pydantic's own message would print them all)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        message = error["msg"].removeprefix("Value error, ")
        field = "_".join(str(part) for part in error["loc"])
        problems.append(f"LEDGER_{field.upper()}: {message}" if field else message)
    return "; ".join(problems)


ENVIRONMENT_ERRORS = ("confluent_kafka", "cimpl", "cassandra", "redis")  # cimpl: confluent-kafka's C core


def environmental(exc: BaseException) -> bool:
    """An error of the environment (a service unreachable, refusing, timing out), not of our code:
    the user gets one line, never a traceback."""
    if isinstance(exc, OSError):
        return True
    return any(type(exc).__module__ == m or type(exc).__module__.startswith(m + ".") for m in ENVIRONMENT_ERRORS)


if __name__ == "__main__":
    raise SystemExit(main())
