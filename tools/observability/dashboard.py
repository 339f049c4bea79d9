"""The Grafana dashboard of the Download Ledger, generated: `python -m tools.observability.dashboard`
writes deploy/observability/grafana/download-ledger.json (checked in; tests/unit/test_observability.py
fails when the file and this script differ).

Every query reads metrics the worker (`ledger worker`, LEDGER_METRICS_PORT) or the read API (`/metrics`)
export; tests/e2e/test_metrics_exported.py scrapes both and checks each name used here exists.
Several workers of one group export the same lag values, hence ``max by`` on the lag gauges.

Publish-to-view latency is ``ledger_publish_to_view_seconds``, exported by the projector: from the
input message's Kafka timestamp (carried on its ledger entry) to the end of the batch that wrote the
view. Traces of single events (README: Operating, tracing) show where that time went.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[2] / "deploy" / "observability" / "grafana" / "download-ledger.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"


def _target(expr: str, legend: str, ref: str) -> dict:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def panel(title: str, targets: list[tuple[str, str]], *, unit: str = "short", description: str = "",
          stack: bool = False, width: int = 12, height: int = 8) -> dict:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": width, "h": height},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0,
                           "stacking": {"mode": "normal" if stack else "none", "group": "A"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
    }


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"w": 24, "h": 1}, "panels": []}


def panels() -> list[dict]:
    return [
        row("Decider"),
        panel("Throughput by outcome", [
            (f"sum by (outcome) (rate(ledger_decider_events_total[{RATE}]))", "{{outcome}}"),
        ], unit="ops", stack=True, description="input messages per second: accepted, rejected, duplicate, dead_letter"),
        panel("Rejections by reason", [
            (f"sum by (reason) (rate(ledger_decider_rejections_total[{RATE}]))", "{{reason}}"),
        ], unit="ops", stack=True),
        panel("Dead letters by code", [
            (f"sum by (code) (rate(ledger_decider_dead_letters_total[{RATE}]))", "{{code}}"),
        ], unit="ops", stack=True, description="`ledger dlq list --code CODE` shows them; README: Operating"),
        panel("Outputs diverted, truncated, dropped", [
            (f"sum by (code) (rate(ledger_decider_outputs_diverted_total[{RATE}]))", "diverted {{code}}"),
            (f"sum(rate(ledger_decider_dead_letters_truncated_total[{RATE}]))", "dead letters truncated"),
            (f"sum(rate(ledger_decider_outputs_dropped_total[{RATE}]))", "dropped"),
            (f"sum(rate(ledger_decider_store_conflicts_total[{RATE}]))", "store conflicts"),
            (f"sum(rate(ledger_decider_store_behind_total[{RATE}]))", "store behind (lost writes)"),
        ], unit="ops"),
        row("Lag and members"),
        panel("Lag in seconds per role", [
            ("max by (role) (ledger_consumer_lag_seconds)", "{{role}}"),
        ], unit="s", width=8, description="age of the oldest unprocessed message, worst partition"),
        panel("Lag in messages per role", [
            ("sum by (role) (max by (role, topic, partition) (ledger_consumer_lag_messages))", "{{role}}"),
        ], width=8),
        panel("Group members per role", [
            ("max by (role) (ledger_consumer_group_members)", "{{role}}"),
        ], width=8, description="0: no worker runs the role (its lag only grows)"),
        row("Batches"),
        panel("Batch latency", [
            (f"histogram_quantile(0.5, sum by (stage, le) (rate(ledger_batch_seconds_bucket[{RATE}])))",
             "p50 {{stage}}"),
            (f"histogram_quantile(0.99, sum by (stage, le) (rate(ledger_batch_seconds_bucket[{RATE}])))",
             "p99 {{stage}}"),
        ], unit="s", width=8),
        panel("Batch size", [
            (f"sum by (stage) (rate(ledger_batch_size_sum[{RATE}])) / "
             f"sum by (stage) (rate(ledger_batch_size_count[{RATE}]))", "mean {{stage}}"),
        ], width=8),
        panel("Projector entries by outcome", [
            (f"sum by (outcome) (rate(ledger_projector_entries_total[{RATE}]))", "{{outcome}}"),
        ], unit="ops", stack=True, width=8),
        row("End to end"),
        panel("Publish-to-view latency", [
            (f"histogram_quantile(0.5, sum by (le) (rate(ledger_publish_to_view_seconds_bucket[{RATE}])))", "p50"),
            (f"histogram_quantile(0.99, sum by (le) (rate(ledger_publish_to_view_seconds_bucket[{RATE}])))", "p99"),
        ], unit="s", width=16, description="from an event's publish (its Kafka timestamp) to its view written by "
                                           "the projector; a redelivered entry counts again"),
        panel("Events reaching their view", [
            (f"sum(rate(ledger_publish_to_view_seconds_count[{RATE}]))", "per second"),
        ], unit="ops", width=8),
        row("Read API"),
        panel("Requests by status", [
            (f"sum by (status) (rate(ledger_api_requests_total[{RATE}]))", "{{status}}"),
        ], unit="reqps", stack=True, width=8),
        panel("Latency", [
            (f"histogram_quantile(0.5, sum by (le) (rate(ledger_api_request_duration_seconds_bucket[{RATE}])))",
             "p50"),
            (f"histogram_quantile(0.99, sum by (le) (rate(ledger_api_request_duration_seconds_bucket[{RATE}])))",
             "p99"),
            (f"histogram_quantile(0.99, sum by (route, le) "
             f"(rate(ledger_api_request_duration_seconds_bucket[{RATE}])))", "p99 {{route}}"),
        ], unit="s", width=8),
        panel("Error ratio (5xx)", [
            (f'sum(rate(ledger_api_requests_total{{status=~"5.."}}[{RATE}])) / '
             f"sum(rate(ledger_api_requests_total[{RATE}]))", "5xx / all"),
        ], unit="percentunit", width=8),
    ]


def _layout(items: list[dict]) -> list[dict]:
    """Grafana's grid: panels left to right in rows of 24 columns; a row panel starts a new line."""
    x = y = line = 0
    for i, p in enumerate(items, start=1):
        p["id"] = i
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if p["type"] == "row" or x + w > 24:
            x, y = 0, y + line
            line = 0
        p["gridPos"].update(x=x, y=y)
        x += w
        line = max(line, h)
        if p["type"] == "row":
            x, y, line = 0, y + h, 0
    return items


def build() -> dict:
    return {
        "title": "Download Ledger",
        "uid": "download-ledger",
        "description": "Decider, projector, consumer lag, publish-to-view latency and read API of the Download "
                       "Ledger (README: Operating).",
        "tags": ["download-ledger"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus", "current": {}, "hide": 0}]},
        "annotations": {"list": []},
        "panels": _layout(panels()),
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
