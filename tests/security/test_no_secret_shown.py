"""No password of the secure profile shows: not in what `ledger stack` prints, not in a log, not on a
command line of a running server."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tools.stack import credentials, manager
from tools.stack.tls import TlsFiles


def _secrets(stack_dir: Path) -> list[str]:
    return [*credentials.passwords(stack_dir).values(), TlsFiles(stack_dir / "tls").keystore_password()]


def _ledger(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "app.entrypoints.cli", *args], capture_output=True, text=True,
                            timeout=120)
    return result.stdout + result.stderr


def test_the_stack_commands_print_no_password(secure_dir):
    printed = [_ledger("stack", "status", "--profile", "secure"), _ledger("stack", "up", "--profile", "secure")]
    printed += [_ledger("stack", "env", "--profile", "secure", "--principal", p) for p in credentials.PRINCIPALS]
    assert "healthy" in printed[0] and "LEDGER_REDIS_PASSWORD_FILE" in printed[-1]
    for secret in _secrets(secure_dir):
        assert not [text for text in printed if secret in text]


def test_no_log_and_no_command_line_holds_a_password(secure_dir):
    logs = [p for p in (secure_dir / "logs").rglob("*") if p.is_file()]
    assert logs
    command_lines = []
    for service in manager.services(secure_dir):
        pid = service.process.pid()
        assert pid is not None, service.name
        command_lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
    for secret in _secrets(secure_dir):
        assert not [log for log in logs if secret in log.read_text(errors="replace")]
        assert not [line for line in command_lines if secret in line]
