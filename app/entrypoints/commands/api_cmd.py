"""`ledger api`: serve the read API (uvicorn) on LEDGER_API_HOST:LEDGER_API_PORT."""
from __future__ import annotations

import socket
import sys

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


def listen(host: str, port: int) -> socket.socket:
    """Bind before uvicorn starts, so a taken port is one line here instead of uvicorn's exit."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise CommandError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    # without it every response waits ~40 ms on Nagle + delayed ACK (headers and body are two writes).
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def run(args, settings) -> int:
    import uvicorn

    from app.entrypoints.api import create_api

    host = args.host or settings.api_host
    port = settings.api_port if args.port is None else args.port
    workers = settings.api_workers if args.workers is None else args.workers
    if not settings.api_token_set:
        raise CommandError("LEDGER_API_TOKENS is empty: no client could call /v1")
    if workers < 1:
        raise CommandError(f"--workers must be at least 1, got {workers}")
    sock = listen(host, port)
    # One process: the app built here. Several: each worker process builds its own from the
    # environment (the same LEDGER_* variables), and they all accept on the socket bound above.
    config = uvicorn.Config(
        create_api(settings) if workers == 1 else APP_FACTORY,
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
    bound_host, bound_port = sock.getsockname()[:2]
    print(f"ledger api: serving http://{bound_host}:{bound_port} with {workers} worker process(es) "
          "(Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        if workers == 1:
            uvicorn.Server(config).run(sockets=[sock])
        else:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
    return 0
