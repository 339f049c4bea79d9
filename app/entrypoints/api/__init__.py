"""The HTTP read API over the Redis views (`ledger api`)."""
from app.entrypoints.api.app import create_app

__all__ = ["create_app"]
