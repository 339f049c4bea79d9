"""The developer tools' subcommands of `ledger` (stack, simulate, demo, bench), registered by the
CLI when this package is installed beside the runtime."""
from __future__ import annotations

from tools.bench.cli import register as register_bench
from tools.commands import demo_cmd, simulate_cmd, stack_cmd

REGISTRY = [stack_cmd.register, demo_cmd.register, simulate_cmd.register, register_bench]
