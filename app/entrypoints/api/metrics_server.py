"""The API's /metrics on a port of its own (LEDGER_API_METRICS_PORT), beside the main port.

A second uvicorn server in a daemon thread of the API process serves the process's own registry on an
already bound socket. Off the main thread uvicorn installs no signal handlers, so the main server keeps
Ctrl-C and SIGTERM; stopping the API stops this one through ``stop``.
"""
from __future__ import annotations

import socket
import threading
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import Response

from app.entrypoints.api.errors import error_response

START_TIMEOUT_S = 10.0


def metrics_app(registry: CollectorRegistry):
    """GET/HEAD /metrics; anything else is a 404 or 405 in the API's error shape."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            response = error_response(404, "not_found", "Not Found")
        elif scope["method"] not in ("GET", "HEAD"):
            response = error_response(405, "method_not_allowed", "Method Not Allowed", {"Allow": "GET, HEAD"})
        else:
            response = Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        await response(scope, receive, send)

    return app


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, sock: socket.socket, log_level: str = "warning"):
        import uvicorn

        config = uvicorn.Config(metrics_app(registry), lifespan="off", log_level=log_level, access_log=False,
                                server_header=False, proxy_headers=False)
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       name="api-metrics", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the metrics server did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
