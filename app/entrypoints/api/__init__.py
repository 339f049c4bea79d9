"""The HTTP read API over the Redis views (`ledger api`)."""
from app.entrypoints.api.app import create_api


def create_api_from_environment():
    """The app of one worker process of `ledger api --workers N` (uvicorn imports it by name): its
    Settings from the LEDGER_* variables, read now, as the parent read them."""
    from app.config import Settings

    return create_api(Settings())


__all__ = ["create_api", "create_api_from_environment"]
