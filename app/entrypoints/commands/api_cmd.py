"""`ledger api`: serve the read API (uvicorn) on LEDGER_API_HOST:LEDGER_API_PORT, and its /metrics on
LEDGER_API_METRICS_PORT when set."""
from __future__ import annotations

import os
import socket
import sys

from app.config import DEFAULT_API_TOKEN, ConfigError
from app.entrypoints import heap
from app.entrypoints.commands.errors import CommandError


def register(sub) -> None:
    p = sub.add_parser("api", help="serve the HTTP read API over the Redis views")
    p.add_argument("--host", help="interface to listen on (default LEDGER_API_HOST)")
    p.add_argument("--port", type=int, help="port (default LEDGER_API_PORT)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true", help="log every request (off: /metrics counts them)")
    p.add_argument("--workers", type=int, help="server processes sharing the port (default LEDGER_API_WORKERS, 1)")
    p.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"],
                   help="event loop (auto: uvloop, installed with the project)")
    p.add_argument("--http", default="auto", choices=["auto", "h11", "httptools"],
                   help="HTTP parser (auto: httptools, installed with the project)")
    p.set_defaults(handler=run)


APP_FACTORY = "app.entrypoints.api:create_api_from_environment"


def listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """Bind before uvicorn starts, so a taken port is one line here instead of uvicorn's exit.
    reuse_port: several processes each bind the port (the kernel spreads connections over them)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise CommandError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    # without it every response waits ~40 ms on Nagle + delayed ACK (headers and body are two writes).
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def check_tokens(settings) -> None:
    """Refuses to serve with no token, or outside the local environment with the local development token.
    The messages name settings, never a token."""
    try:
        tokens = settings.api_token_set
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if not tokens:
        raise CommandError("no API token configured (LEDGER_API_TOKENS, LEDGER_API_TOKENS_FILE): no client could call "
                           "/v1")
    if settings.environment != "local" and DEFAULT_API_TOKEN in tokens:
        raise CommandError(f"LEDGER_ENVIRONMENT={settings.environment}: refusing to serve with the local development "
                           "token; set LEDGER_API_TOKENS_FILE (or LEDGER_API_TOKENS) to your own tokens, without it")


def run(args, settings) -> int:
    import uvicorn

    from app.entrypoints.api import create_api

    host = args.host or settings.api_host
    port = settings.api_port if args.port is None else args.port
    workers = settings.api_workers if args.workers is None else args.workers
    check_tokens(settings)
    if workers < 1:
        raise CommandError(f"--workers must be at least 1, got {workers}")
    metrics_port = settings.api_metrics_port
    if metrics_port == 0 and workers > 1:
        raise CommandError("LEDGER_API_METRICS_PORT=0 (any free port) needs --workers 1: each worker binds the port")
    sock = listen(host, port)
    metrics_sock = None
    if metrics_port is not None:
        # One worker serves /metrics on this socket; several each bind the port themselves (SO_REUSEPORT),
        # this check only makes a taken port one line here.
        metrics_sock = listen(host, metrics_port, reuse_port=workers > 1)
        if workers > 1:
            metrics_sock.close()
            os.environ["LEDGER_API_HOST"] = host  # the workers build their settings from the environment
    # One process: the app built here. Several: each worker process builds its own from the
    # environment (the same LEDGER_* variables), and they all accept on the socket bound above.
    config = uvicorn.Config(
        create_api(settings, metrics_socket=metrics_sock) if workers == 1 else APP_FACTORY,
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        log_level=args.log_level,
        access_log=args.access_log,
        proxy_headers=False,
        server_header=False,
        loop=args.loop,  # auto: uvloop when installed (it is a dependency), else asyncio
        http=args.http,  # auto: httptools when installed (likewise), else h11
    )
    if workers == 1:
        config.load()  # uvicorn's protocol and lifespan modules: start-up too, so settled with the rest
        heap.settle()  # several workers: each process settles its own, after building its app
    bound_host, bound_port = sock.getsockname()[:2]
    metrics_at = "" if metrics_port is None else \
        f", /metrics on http://{bound_host}:{metrics_sock.getsockname()[1] if workers == 1 else metrics_port}"
    print(f"ledger api: serving http://{bound_host}:{bound_port} with {workers} worker process(es){metrics_at} "
          "(Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        if workers == 1:
            uvicorn.Server(config).run(sockets=[sock])
        else:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
        if metrics_sock is not None:
            metrics_sock.close()
    return 0
