"""The worker's logging costs nothing below its level: Faust's start-up spinner sets the root
logger to DEBUG (for its own handler) and leaves it there, so every `log.debug` of aiokafka, the
Cassandra driver and redis-py built a LogRecord per call for the worker's whole life — about a tenth
of the worker's CPU under load (py-spy, soak of 2026-11-29: aiokafka's fetcher alone 7.5%)."""
from __future__ import annotations

import logging

import faust
import pytest

from app.entrypoints.worker.faust_app import _BoundedStopWorker


@pytest.fixture
def restored_root_logger():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("loglevel", ["WARNING", "INFO"])
def test_below_the_worker_log_level_no_library_logger_builds_records(restored_root_logger, loglevel):
    app = faust.App("logging-test", broker="kafka://127.0.0.1:1")
    worker = _BoundedStopWorker(app, stop_timeout_s=1.0, loglevel=loglevel, quiet=True)
    worker._setup_logging()  # what mode's worker does on its first start

    assert restored_root_logger.level == logging.getLevelName(loglevel)
    for name in ("aiokafka.consumer.fetcher", "faust.transport.consumer", "cassandra.connection", "redis"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
