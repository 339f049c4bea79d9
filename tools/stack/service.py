"""What every local server offers the stack manager."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from app.config import REPO_ROOT
from tools.stack.process import ManagedProcess

DEPLOY_LOCAL = REPO_ROOT / "deploy" / "local"


class LocalService(ABC):
    name: str
    port: int
    host = "127.0.0.1"

    def __init__(self, stack_dir: Path):
        self.stack_dir = stack_dir
        self.data_dir = stack_dir / "data" / self.name
        self.log_dir = stack_dir / "logs" / self.name
        self.process = ManagedProcess(self.name, stack_dir / "run", self.log_dir / "stdout.log")

    @abstractmethod
    def install(self) -> list[str]:
        """Fetch what is missing; returns what was installed (empty when nothing was)."""

    @abstractmethod
    def prepare(self) -> None:
        """Write config files and initialise storage; idempotent."""

    @abstractmethod
    def argv(self) -> list[str]:
        """The command that runs the server in the foreground."""

    @abstractmethod
    def check(self) -> str:
        """Ask the server a real question; returns a short answer or raises."""

    def log_files(self) -> list[Path]:
        return [self.process.log_file]
