"""The HTTP read API over the Redis views (`ledger api`)."""
from app.entrypoints.api.app import create_api

__all__ = ["create_api"]
