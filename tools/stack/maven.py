"""Fetches a server's jars from Maven Central through a POM, once per POM content."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path


class InstallError(RuntimeError):
    pass


def ensure_jars(pom: Path, lib_dir: Path) -> bool:
    """Copy the POM's runtime dependencies into ``lib_dir``; returns False when already done."""
    stamp = lib_dir / ".pom-sha256"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return False
    if shutil.which("mvn") is None:
        raise InstallError("mvn not found: install Maven (apt-get install maven)")
    if lib_dir.exists():
        shutil.rmtree(lib_dir)
    lib_dir.mkdir(parents=True)
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={lib_dir}", "-DincludeScope=runtime"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise InstallError(f"mvn could not fetch the jars of {pom}:\n{tail}")
    stamp.write_text(digest)
    return True
