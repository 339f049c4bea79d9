"""The driver's log keeps every server warning but the one about our deliberate unlogged batches."""

from __future__ import annotations

import logging

from app.adapters.cassandra.session import _BATCH_WARNINGS


def _record(text: str) -> logging.LogRecord:
    return logging.LogRecord("cassandra.protocol", logging.WARNING, __file__, 1, "Server warning: %s", (text,), None)


def test_only_the_unlogged_batch_across_partitions_warning_is_dropped() -> None:
    assert not _BATCH_WARNINGS.filter(_record("Unlogged batch covering 22 partitions detected against table ks.t"))
    assert _BATCH_WARNINGS.filter(_record("Batch for [ks.t] is of size 70.000KiB, exceeding specified threshold"))
    assert _BATCH_WARNINGS.filter(logging.LogRecord("x", logging.WARNING, __file__, 1, "no args", None, None))
