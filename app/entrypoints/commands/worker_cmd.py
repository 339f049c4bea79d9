"""`ledger worker`: a Faust worker running the decider, the projector, or both."""
from __future__ import annotations

import logging

from app.entrypoints import heap
from app.entrypoints.commands.errors import CommandError


def register(sub) -> None:
    p = sub.add_parser("worker", help="run a Faust worker (decider and/or projector)")
    p.add_argument("--role", choices=["decider", "projector", "all"], default="all")
    p.add_argument("--metrics-port", type=int,
                   help="port of /metrics, /healthz and /readyz (default LEDGER_METRICS_PORT; 0: off)")
    p.add_argument("--loglevel", default="warning")
    p.set_defaults(handler=run)


def run(args, settings) -> int:
    from app import bootstrap
    from app.bootstrap import worker_services
    from app.entrypoints.worker.faust_app import create_worker_app, run_worker, stages_of
    from app.entrypoints.worker.lag_exporter import LagExporter
    from app.observability import WorkerHealth, serve_worker_http

    health = WorkerHealth(stages_of(args.role), settings.stall_timeout_s)
    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    if port:  # served from the start: /readyz says not_assigned while the worker connects and joins
        try:
            serve_worker_http(health, port, "127.0.0.1" if settings.environment == "local" else "0.0.0.0")
        except OSError as exc:
            raise CommandError(f"metrics port {port} is not free ({exc.strerror}); use --metrics-port") from None
    try:
        services = worker_services(settings, args.role)
    except Exception as exc:
        raise CommandError(f"cannot connect to the stores: {exc}") from None
    logging.basicConfig(level=args.loglevel.upper())
    app = create_worker_app(settings, args.role, services, health)
    exporter = None
    if port:  # the lag gauges are only worth reading where Prometheus can scrape them
        exporter = LagExporter(bootstrap.consumer_lag(settings), bootstrap.worker_groups(settings),
                               bootstrap.group_id(settings, args.role), settings.lag_interval_s).start()
    heap.settle()
    try:
        run_worker(app, args.loglevel, settings.stop_timeout_s)
    finally:
        if exporter is not None:
            exporter.stop()
        services.close()
    return 0
