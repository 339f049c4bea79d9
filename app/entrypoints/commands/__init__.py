"""Subcommands of `ledger`; each module exposes ``register(subparsers)`` and imports its heavy
dependencies inside its handler, so `ledger --help` stays fast."""
from __future__ import annotations

from app.entrypoints.commands.errors import CommandError
from app.entrypoints.commands import (  # noqa: E402  (after CommandError, which they import)
    api_cmd, demo_cmd, migrate_cmd, publish_cmd, replay_cmd, simulate_cmd, stack_cmd, topics_cmd, verify_cmd,
    worker_cmd,
)
from app.bench.cli import register as register_bench  # noqa: E402

REGISTRY = [
    stack_cmd.register, topics_cmd.register, migrate_cmd.register,   # the stack
    worker_cmd.register, api_cmd.register, demo_cmd.register,        # running the pipeline
    publish_cmd.register, simulate_cmd.register,                     # feeding it
    replay_cmd.register, verify_cmd.register,                        # operating it
    register_bench,
]

__all__ = ["CommandError", "REGISTRY"]
