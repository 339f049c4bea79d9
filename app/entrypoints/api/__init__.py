"""The HTTP read API over the Redis views (`ledger api`)."""
from app.entrypoints.api.app import create_api


def create_api_from_environment():
    """The app of one worker process of `ledger api --workers N` (uvicorn imports it by name): its
    Settings from the LEDGER_* variables, read now, as the parent read them."""
    from app.config import Settings
    from app.entrypoints import heap
    from app.entrypoints.commands.api_cmd import listen

    settings = Settings()
    metrics_socket = None
    if settings.api_metrics_port is not None:  # each worker serves its own metrics; the kernel spreads scrapes
        metrics_socket = listen(settings.api_host, settings.api_metrics_port, reuse_port=True)
    app = create_api(settings, metrics_socket=metrics_socket)
    heap.settle()
    return app


__all__ = ["create_api", "create_api_from_environment"]
