"""The secure profile's principals and their passwords: one random password per principal, made at
the first `ledger stack up --profile secure`, kept in ``<stack>/secrets/<principal>.password``
(0600) and used by the same principal in Kafka, Cassandra and Redis. Nothing here prints one."""
from __future__ import annotations

import secrets
from pathlib import Path

from tools.stack.tls import write_secret

PRINCIPALS = ("admin", "decider", "projector", "api", "tools")
KAFKA_PRINCIPALS = ("admin", "decider", "projector", "tools")  # the read API never reads Kafka: no user there


def secrets_dir(stack_dir: Path) -> Path:
    return stack_dir / "secrets"


def password_file(stack_dir: Path, principal: str) -> Path:
    if principal not in PRINCIPALS:
        raise ValueError(f"unknown principal {principal!r}: choose {', '.join(PRINCIPALS)}")
    return secrets_dir(stack_dir) / f"{principal}.password"


def ensure_passwords(stack_dir: Path) -> list[str]:
    """Make the password of every principal that has none; returns the principals given one."""
    made = []
    for principal in PRINCIPALS:
        path = password_file(stack_dir, principal)
        if not path.exists():
            secrets_dir(stack_dir).mkdir(parents=True, exist_ok=True)
            secrets_dir(stack_dir).chmod(0o700)
            write_secret(path, secrets.token_urlsafe(24))
            made.append(principal)
    return made


def password(stack_dir: Path, principal: str) -> str:
    return password_file(stack_dir, principal).read_text().strip()


def passwords(stack_dir: Path) -> dict[str, str]:
    return {p: password(stack_dir, p) for p in PRINCIPALS}
