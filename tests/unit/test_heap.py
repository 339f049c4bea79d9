"""`ledger worker` and `ledger api` settle the collector (app.entrypoints.heap) once start-up is done:
what start-up built is frozen, and young collections wait for YOUNG_THRESHOLD allocations."""
from __future__ import annotations

import gc

import pytest
import uvicorn

from app import bootstrap
from app.entrypoints import cli, heap
from app.entrypoints.worker import faust_app


@pytest.fixture
def collector():
    """The state each test sees when its command starts serving; the process's own is restored after."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    seen: dict = {}
    yield seen
    gc.unfreeze()
    gc.set_threshold(*threshold)


def collector_state() -> dict:
    return {"young": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}


def test_settle_freezes_what_exists_and_raises_the_young_threshold(collector):
    heap.settle()
    assert gc.get_freeze_count() > 1_000  # this process's modules, pytest's and the app's
    assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD


def test_the_api_settles_the_collector_before_it_serves(monkeypatch, collector):
    def serve(self, sockets=None):
        collector.update(collector_state())

    monkeypatch.setattr(uvicorn.Server, "run", serve)
    monkeypatch.setenv("LEDGER_API_TOKENS", "a-token")
    monkeypatch.setenv("LEDGER_API_PORT", "0")
    assert cli.main(["api", "--workers", "1"]) == 0
    assert collector["young"] == heap.YOUNG_THRESHOLD and collector["frozen"] > 1_000


def test_each_api_worker_process_settles_its_collector(monkeypatch, collector):
    from app.entrypoints.api import create_api_from_environment

    monkeypatch.setenv("LEDGER_API_TOKENS", "a-token")
    create_api_from_environment()
    assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD and gc.get_freeze_count() > 1_000


def test_the_worker_settles_the_collector_before_it_runs(monkeypatch, collector):
    class Services:
        def close(self):
            pass

    monkeypatch.setattr(bootstrap, "worker_services", lambda settings, role: Services())
    monkeypatch.setattr(faust_app, "create_worker_app", lambda settings, role, services, health: object())
    monkeypatch.setattr(faust_app, "run_worker", lambda app, loglevel, stop: collector.update(collector_state()))
    assert cli.main(["worker", "--metrics-port", "0"]) == 0
    assert collector["young"] == heap.YOUNG_THRESHOLD and collector["frozen"] > 1_000

