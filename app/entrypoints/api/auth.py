"""Bearer-token authentication as a pure ASGI middleware.

It runs before routing and before anything reads the request body: a request without a valid token
is answered 401 from its headers alone, so an unauthenticated caller can make the API neither parse
nor wait for a body (a broken or huge one is a 401, not a 422 or a 413). Every path needs a token
except the operational ones in ``PUBLIC_PATHS``.
"""
from __future__ import annotations

import hmac
from collections.abc import Iterable

from fastapi import FastAPI
from starlette.routing import Match

from app.entrypoints.api.errors import error_response

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
MISSING = ("missing bearer token", "Bearer")
INVALID = ("invalid bearer token", 'Bearer error="invalid_token"')


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The credentials of the request's one ``Authorization: Bearer`` header (scheme case-insensitive)."""
    values = [value for name, value in headers if name.lower() == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, credentials = values[0].strip().partition(b" ")
    credentials = credentials.strip()
    if scheme.lower() != b"bearer" or not credentials:
        return None
    return credentials


def token_matches(given: bytes, tokens: tuple[bytes, ...]) -> bool:
    """Compares with every configured token, each in constant time, so timing tells nothing of which matched."""
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token)
    return matched


class BearerAuth:
    def __init__(self, app, tokens: Iterable[str], routes: list, public_paths: frozenset[str] = PUBLIC_PATHS):
        self.app = app
        self.tokens = tuple(t.encode("utf-8") for t in tokens)
        self.routes = routes  # the app's route list, only to label a refused request's metrics
        self.public_paths = public_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        given = bearer_token(scope["headers"])
        if given is not None and token_matches(given, self.tokens):
            await self.app(scope, receive, send)
            return
        message, challenge = MISSING if given is None else INVALID
        self._label_route(scope)
        response = error_response(401, "unauthorized", message, {"WWW-Authenticate": challenge})
        await response(scope, receive, send)  # sends headers and body; never calls receive

    def _label_route(self, scope) -> None:
        """Names the route the request would have reached, so the request metrics count a 401 under it."""
        for route in _endpoints(self.routes):
            match, _ = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                return


def _endpoints(routes):
    """The routes with a path, also those of included routers (FastAPI keeps the router, not its routes)."""
    for route in routes:
        nested = getattr(getattr(route, "original_router", route), "routes", None)
        if nested is not None and nested is not routes:
            yield from _endpoints(nested)
        elif isinstance(getattr(route, "path", None), str):
            yield route


def document_bearer(app: FastAPI, prefix: str, description: str) -> None:
    """Declares the bearer scheme in /openapi.json for every operation under ``prefix``, as a
    ``Depends(HTTPBearer())`` would, without a dependency to solve on each request: BearerAuth has
    already checked the token by then."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["HTTPBearer"] = {"type": "http", "scheme": "bearer", "description": description}
            for path, operations in schema["paths"].items():
                if path.startswith(prefix):
                    for operation in operations.values():
                        operation["security"] = [{"HTTPBearer": []}]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
