"""Declarative topic definitions (topics/*.yaml) and the plan that makes a cluster match them.

Pure: no Kafka client here, so the planning rules are unit-tested without a broker.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml


class TopicSpecError(ValueError):
    pass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


@dataclass(frozen=True)
class ActualTopic:
    name: str
    partitions: int
    config: dict[str, str]


@dataclass
class Plan:
    create: list[TopicSpec] = field(default_factory=list)
    add_partitions: list[tuple[str, int, int]] = field(default_factory=list)  # name, from, to
    alter_config: list[tuple[str, str, str | None, str]] = field(default_factory=list)  # name, key, old, new
    refused: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.add_partitions or self.alter_config)

    def describe(self) -> list[str]:
        lines = [f"create {t.name} (partitions={t.partitions}, replication={t.replication_factor}, "
                 f"{', '.join(f'{k}={v}' for k, v in sorted(t.config.items()))})" for t in self.create]
        lines += [f"partitions {name}: {old} -> {new}" for name, old, new in self.add_partitions]
        lines += [f"config {name}: {key} {old} -> {new}" for name, key, old, new in self.alter_config]
        lines += [f"REFUSED {r}" for r in self.refused]
        return lines


def load_specs(directory: Path, environment: str) -> list[TopicSpec]:
    specs = []
    for path in sorted(directory.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        try:
            override = (raw.get("environments") or {}).get(environment) or {}
            config = {**(raw.get("config") or {}), **(override.get("config") or {})}
            specs.append(TopicSpec(
                name=raw["name"],
                partitions=int(override.get("partitions", raw.get("partitions", 12))),
                replication_factor=int(override.get("replication_factor", raw.get("replication_factor", 1))),
                config={k: str(v) for k, v in config.items()},
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise TopicSpecError(f"{path.name}: invalid topic definition ({exc})") from None
    return specs


def plan(specs: list[TopicSpec], actual: dict[str, ActualTopic]) -> Plan:
    result = Plan()
    for spec in specs:
        current = actual.get(spec.name)
        if current is None:
            result.create.append(spec)
            continue
        if spec.partitions > current.partitions:
            result.add_partitions.append((spec.name, current.partitions, spec.partitions))
        elif spec.partitions < current.partitions:
            result.refused.append(
                f"{spec.name}: lowering partitions {current.partitions} -> {spec.partitions} is not possible "
                "in Kafka (it would also move keys between partitions)")
        for key, value in sorted(spec.config.items()):
            if current.config.get(key) != value:
                result.alter_config.append((spec.name, key, current.config.get(key), value))
    return result
