"""The layers point inward: the import-linter contracts of pyproject.toml hold, and the runtime
entrypoints load none of the developer tools."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def loaded_after_importing(modules: list[str], roots: tuple[str, ...]) -> list[str]:
    """The modules under ``roots`` that importing ``modules`` loads, in a fresh interpreter."""
    probe = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_the_worker_the_api_and_the_services_load_no_tool():
    runtime = ["app.bootstrap", "app.entrypoints.worker.faust_app", "app.entrypoints.api.app", "app.entrypoints.cli"]
    assert loaded_after_importing(runtime, ("tools",)) == []


def test_the_pure_tiers_import_no_driver():
    pure = ["app.domain", "app.domain.history", "app.service.decider", "app.service.projector", "app.service.replay"]
    drivers = ("faust", "confluent_kafka", "cassandra", "redis", "fastavro", "fastapi")
    assert loaded_after_importing(pure, drivers) == []
