"""`ledger simulate`: a seeded, realistic workload for the pipeline.

`workload` generates items (pure, deterministic, no I/O); `publish` sends them to Kafka at a target
rate; `jsonl` writes them as JSON lines in the `ledger publish` format.
"""
from tools.simulate.workload import Item, ItemKind, WorkloadConfig, generate

__all__ = ["Item", "ItemKind", "WorkloadConfig", "generate"]
