"""The checked-in dashboard and alert rules (deploy/observability/), and the metric names they use."""
from __future__ import annotations

import json
import re

import yaml

from app.config import REPO_ROOT

OBSERVABILITY = REPO_ROOT / "deploy" / "observability"
DASHBOARD = OBSERVABILITY / "grafana" / "download-ledger.json"
RULES = OBSERVABILITY / "prometheus" / "alerts.yml"
RULES_TEST = OBSERVABILITY / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = OBSERVABILITY / "prometheus" / "prometheus.yml"
_NAME = re.compile(r"\b(ledger_[a-z0-9_]+)\b")


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def referenced_metric_names() -> set[str]:
    """Every ledger_* series name the dashboard's queries and the alert expressions read."""
    exprs = dashboard_expressions() + [r["expr"] for r in alert_rules()]
    return {name for expr in exprs for name in _NAME.findall(expr)}


def exported_names(exposition: str) -> set[str]:
    """The series names a Prometheus text exposition declares (from its TYPE lines, so a labelled
    metric with no sample yet counts): a counter X as X_total, a histogram as X_bucket/_count/_sum."""
    names = set()
    for line in exposition.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, name, kind = line.split(maxsplit=3)
        if kind == "counter":
            names.add(name if name.endswith("_total") else name + "_total")
        elif kind in ("histogram", "summary"):
            names.update({name + "_count", name + "_sum"} | ({name + "_bucket"} if kind == "histogram" else set()))
        else:
            names.add(name)
    return names
