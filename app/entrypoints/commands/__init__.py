"""Subcommands of `ledger`; each module exposes ``register(subparsers)`` and imports its heavy
dependencies inside its handler, so `ledger --help` stays fast."""
from __future__ import annotations

from app.entrypoints.commands import (
    api_cmd,
    dlq_cmd,
    history_cmd,
    migrate_cmd,
    publish_cmd,
    replay_cmd,
    status_cmd,
    topics_cmd,
    verify_cmd,
    whatif_cmd,
    worker_cmd,
)
from app.entrypoints.commands.errors import CommandError

REGISTRY = [
    topics_cmd.register, migrate_cmd.register,                       # the schema of a cluster
    worker_cmd.register, api_cmd.register,                           # running the pipeline
    publish_cmd.register,                                            # feeding it
    replay_cmd.register, verify_cmd.register,                        # operating it
    status_cmd.register, dlq_cmd.register,                          # operating it
    history_cmd.register, whatif_cmd.register,                       # a member's timeline
]

__all__ = ["CommandError", "REGISTRY"]
