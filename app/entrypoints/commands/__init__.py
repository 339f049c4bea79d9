"""Subcommands of `ledger`; each module exposes ``register(subparsers)``."""
from __future__ import annotations


class CommandError(Exception):
    """A failure the user can act on: printed as one line, non-zero exit."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


from app.entrypoints.commands import api_cmd, migrate_cmd, stack_cmd, publish_cmd, topics_cmd, worker_cmd, replay_cmd, verify_cmd  # noqa: E402

REGISTRY = [stack_cmd.register, topics_cmd.register, migrate_cmd.register, worker_cmd.register, publish_cmd.register, api_cmd.register, replay_cmd.register, verify_cmd.register]

from app.bench.cli import register as register_bench  # noqa: E402
REGISTRY.append(register_bench)

from app.entrypoints.commands import simulate_cmd  # noqa: E402
REGISTRY.append(simulate_cmd.register)
