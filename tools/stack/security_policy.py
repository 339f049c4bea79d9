"""Renders the role policy under ``deploy/security/`` (the one source of what each principal may do)
for given topic, group and keyspace names and passwords, so that the stack, the tests and operators'
tooling apply the same rules:

- ``kafka-acls.txt``: "principal operation resource-type pattern-type name" lines -> `AclRule`s;
- ``cassandra-roles.cql``: CQL statements;
- ``redis-users.acl``: a Redis aclfile (passwords as SHA-256 digests).

``${NAME}`` placeholders are filled in from `policy_values`; an unknown one is an error. Comment
lines (``#``, ``--``) and blank lines are dropped (a Redis aclfile takes no comments)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from app.config import REPO_ROOT

POLICY_DIR = REPO_ROOT / "deploy" / "security"
KAFKA_ACLS, CASSANDRA_ROLES, REDIS_USERS = "kafka-acls.txt", "cassandra-roles.cql", "redis-users.acl"
_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class AclRule:
    principal: str
    operation: str  # READ, WRITE, DESCRIBE, DESCRIBE_CONFIGS, ... (confluent_kafka.admin.AclOperation names)
    resource_type: str  # TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID
    pattern_type: str  # LITERAL, PREFIXED
    name: str


def policy_values(*, events_topic: str, ledger_topic: str, rejections_topic: str, dlq_topic: str,
                  consumer_group: str, keyspace: str, passwords: dict[str, str] | None = None) -> dict[str, str]:
    """The placeholders' values; ``passwords`` by principal give <P>_PASSWORD and <P>_PASSWORD_SHA256."""
    values = {"EVENTS_TOPIC": events_topic, "LEDGER_TOPIC": ledger_topic, "REJECTIONS_TOPIC": rejections_topic,
              "DLQ_TOPIC": dlq_topic, "CONSUMER_GROUP": consumer_group, "KEYSPACE": keyspace}
    for principal, secret in (passwords or {}).items():
        values[f"{principal.upper()}_PASSWORD"] = secret
        values[f"{principal.upper()}_PASSWORD_SHA256"] = hashlib.sha256(secret.encode()).hexdigest()
    return values


def values_from_settings(settings, passwords: dict[str, str] | None = None) -> dict[str, str]:
    return policy_values(events_topic=settings.events_topic, ledger_topic=settings.ledger_topic,
                         rejections_topic=settings.rejections_topic, dlq_topic=settings.dlq_topic,
                         consumer_group=settings.consumer_group, keyspace=settings.cassandra_keyspace,
                         passwords=passwords)


def render(text: str, values: dict[str, str], comment: str = "#") -> list[str]:
    """The non-comment, non-blank lines of ``text`` with every placeholder filled in."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(comment):
            continue

        def fill(match: re.Match) -> str:
            if match.group(1) not in values:
                raise PolicyError(f"no value for ${{{match.group(1)}}} in: {_PLACEHOLDER.sub('…', line)[:80]}")
            return values[match.group(1)]

        lines.append(_PLACEHOLDER.sub(fill, line))
    return lines


def _read(name: str, policy_dir: Path | None) -> str:
    return ((policy_dir or POLICY_DIR) / name).read_text()


def kafka_acls(values: dict[str, str], policy_dir: Path | None = None) -> list[AclRule]:
    rules = []
    for line in render(_read(KAFKA_ACLS, policy_dir), values):
        parts = line.split()
        if len(parts) != 5:
            raise PolicyError(f"{KAFKA_ACLS}: expected 'principal operation resource-type pattern-type name': {line!r}")
        principal, operation, resource_type, pattern_type, name = parts
        rules.append(AclRule(principal, operation.upper(), resource_type.upper(), pattern_type.upper(), name))
    return rules


def cassandra_statements(values: dict[str, str], policy_dir: Path | None = None) -> list[str]:
    text = " ".join(render(_read(CASSANDRA_ROLES, policy_dir), values, comment="--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def redis_aclfile(values: dict[str, str], policy_dir: Path | None = None) -> str:
    return "\n".join(render(_read(REDIS_USERS, policy_dir), values)) + "\n"


def acl_binding(rule: AclRule):
    """The rule as a confluent-kafka ``AclBinding`` (ALLOW, any host)."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    return AclBinding(ResourceType[rule.resource_type], rule.name, ResourcePatternType[rule.pattern_type],
                      f"User:{rule.principal}", "*", AclOperation[rule.operation], AclPermissionType.ALLOW)
