"""Prometheus request metrics by route template and status, as a pure ASGI middleware.

Each app gets its own registry, so several apps (tests) never clash over metric names.
"""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ledger_api_requests", "HTTP requests handled by the read API",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("ledger_api_request_duration_seconds", "time to answer a request",
                                 ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._children: dict[tuple[str, str, str], tuple] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(*key), self.latency.labels(*key))
        children[0].inc()
        children[1].observe(seconds)


def _route_label(scope) -> str:
    """The route template (FastAPI sets scope["route"]); Starlette's own routes here are FastAPI's
    fixed documentation paths (/openapi.json, /docs), labelled by path; anything unrouted is one label."""
    route = scope.get("route")
    if route is not None:
        return route.path
    if scope.get("endpoint") is not None:
        return scope["path"]
    return UNMATCHED


class MetricsMiddleware:
    def __init__(self, app, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.observe(method, _route_label(scope), status, time.perf_counter() - started)
