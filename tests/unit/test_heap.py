"""`ledger worker`, `ledger api` and `ledger replay` settle the collector (app.entrypoints.heap) once
their app is built and before they serve: what start-up built is frozen, and young collections wait for YOUNG_THRESHOLD
allocations."""
from __future__ import annotations

import gc

import pytest
import uvicorn

import app.entrypoints.api as api_package
from app import bootstrap
from app.entrypoints import cli, heap
from app.entrypoints.worker import faust_app


@pytest.fixture
def steps(monkeypatch):
    """What happened, in order; ``settled`` records the collector's state as settle() leaves it. The
    test process's own collector is restored after."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    seen: list = []
    settle = heap.settle

    def recorded_settle():
        settle()
        seen.append(("settled", gc.get_threshold()[0], gc.get_freeze_count() > 1_000))

    monkeypatch.setattr(heap, "settle", recorded_settle)
    yield seen
    gc.unfreeze()
    gc.set_threshold(*threshold)


SETTLED = ("settled", heap.YOUNG_THRESHOLD, True)


@pytest.fixture
def api_built(monkeypatch, steps):
    """create_api records "built" in ``steps`` once it has built the app."""
    create_api = api_package.create_api

    def built(*args, **kwargs):
        app = create_api(*args, **kwargs)
        steps.append("built")
        return app

    monkeypatch.setattr(api_package, "create_api", built)


def test_settle_freezes_what_exists_and_raises_the_young_threshold(steps):
    heap.settle()
    assert steps == [SETTLED]


def test_the_api_settles_the_collector_once_built_and_before_it_serves(monkeypatch, steps, api_built):
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: steps.append("served"))
    monkeypatch.setenv("LEDGER_API_TOKENS", "a-token")
    monkeypatch.setenv("LEDGER_API_PORT", "0")
    assert cli.main(["api", "--workers", "1"]) == 0
    assert steps == ["built", SETTLED, "served"]


def test_each_api_worker_process_settles_its_collector_once_its_app_is_built(monkeypatch, steps, api_built):
    monkeypatch.setenv("LEDGER_API_TOKENS", "a-token")
    api_package.create_api_from_environment()
    assert steps == ["built", SETTLED]


def test_the_worker_settles_the_collector_once_built_and_before_it_runs(monkeypatch, steps):
    class Services:
        def close(self):
            pass

    monkeypatch.setattr(bootstrap, "worker_services", lambda settings, role: Services())
    monkeypatch.setattr(faust_app, "create_worker_app",
                        lambda settings, role, services, health: steps.append("built"))
    monkeypatch.setattr(faust_app, "run_worker", lambda app, loglevel, stop: steps.append("ran"))
    assert cli.main(["worker", "--metrics-port", "0"]) == 0
    assert steps == ["built", SETTLED, "ran"]


def test_replay_settles_the_collector_once_its_stores_are_open_and_before_it_runs(monkeypatch, steps):
    from contextlib import asynccontextmanager

    from app.entrypoints.commands import replay_cmd
    from app.service.replay import ReplayError

    class Replay:
        last_run = None

        async def run(self, **kwargs):
            steps.append("ran")
            raise ReplayError("stopped here by the test")

        def close(self):
            pass

    class Stores:
        def replay(self, observer, **kwargs):
            steps.append("built")
            return Replay()

    @asynccontextmanager
    async def open_stores(settings):
        yield Stores()

    monkeypatch.setattr(replay_cmd, "open_stores", open_stores)
    assert cli.main(["replay"]) == 1
    assert steps == ["built", SETTLED, "ran"]
