"""The three reads that carry the load, answered without FastAPI's routing and parameter solving.

A pure ASGI middleware, the innermost one: metrics, auth and the body limit have run before it as for
any request. FastAPI spends most of a busy read's CPU matching the route and solving its path and query
parameters (BENCHMARKS.md, "The read API's work per request"); for ``GET /v1/members/{member_id}``,
``.../licenses`` and ``.../titles/{title_id}/downloads`` this middleware does that itself and answers
what the route would have answered, from the same view functions (``Reads``), with the same bytes.

It only ever answers a request FastAPI would have accepted: anything it is not sure of (another method,
a ``root_path``, an identifier or a number outside the rules, a percent-encoded or ``+`` query) goes on
to FastAPI, which validates and answers it, 422 included, as before. It sets ``scope["route"]`` to the
route FastAPI would have matched, so the request metrics and the tracing span name it alike, and it
answers the exceptions of a read with the app's own exception handlers, as FastAPI's
``ExceptionMiddleware`` does; an exception without a handler goes up to the server error middleware.
"""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple, get_args

import orjson
from fastapi import Request

from app.entrypoints.api.models import ID_PATTERN, TIME_MAX, TIME_MIN, YEAR_MAX, YEAR_MIN, LicenseState

# FastAPI checks identifiers with pydantic's regex engine, where `$` is the end of the text; Python's
# `$` also matches before a final newline, so the fast path uses fullmatch without the anchors.
_ID = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))
# Only the canonical spelling of an integer: pydantic accepts more (leading zeros, spaces, `_`), and
# those go to FastAPI.
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,15})")
LICENSE_STATES = frozenset(get_args(LicenseState))
PREFIX = "/v1/members/"
JSON_CONTENT_TYPE = b"content-type", b"application/json"


class Reads(NamedTuple):
    """The three reads as the routes run them: each returns the JSON payload (raising what the route raises)."""
    summary: Callable[[str, int | None], Awaitable[dict]]
    licenses: Callable[[str, str | None, int | None], Awaitable[dict]]
    title_downloads: Callable[[str, str, int | None], Awaitable[dict]]


class Routes(NamedTuple):
    """The APIRoutes of the three reads, which FastAPI puts in ``scope["route"]``."""
    summary: Any
    licenses: Any
    title_downloads: Any


# The paths FastReads._match answers, which must be those of the routes.
PATHS = Routes(PREFIX + "{member_id}", PREFIX + "{member_id}/licenses",
               PREFIX + "{member_id}/titles/{title_id}/downloads")


def query_params(query_string: bytes) -> dict[str, str] | None:
    """The query as Starlette reads it (``parse_qsl`` with blank values kept, the last value of a name
    wins), or None when it is percent-encoded or has a ``+``: those are left to FastAPI."""
    if not query_string:
        return {}
    if b"%" in query_string or b"+" in query_string:
        return None
    params = {}
    for pair in query_string.decode("latin-1").split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params[name] = value
    return params


class NotSure(Exception):
    """The request is left to FastAPI, which validates it and answers."""


def bounded_int(text: str | None, low: int, high: int) -> int | None:
    """The integer FastAPI would accept for an optional query parameter, None when absent."""
    if text is None:
        return None
    if _INT.fullmatch(text) is None:
        raise NotSure
    value = int(text)
    if not low <= value <= high:
        raise NotSure
    return value


class FastReads:
    def __init__(self, app, reads: Reads, routes: Routes, exception_handlers: Mapping):
        moved = [f"{r.path} (fast path: {p})" for r, p in zip(routes, PATHS) if r.path != p]
        if moved:
            raise ValueError(f"the busy reads' routes are not the paths the fast path answers: {', '.join(moved)}")
        self.app = app
        self.reads = reads
        self.routes = routes
        self.exception_handlers = exception_handlers  # the app's own, looked up at each error

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        try:
            route, read, args = self._match(scope["path"], scope["query_string"])
        except NotSure:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        try:
            payload = await read(*args)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        body = orjson.dumps(payload)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), JSON_CONTENT_TYPE]})
        await send({"type": "http.response.body", "body": body})

    def _match(self, path: str, query_string: bytes) -> tuple[Any, Callable, tuple]:
        """The route, the read and its arguments of a request FastAPI would accept; NotSure otherwise."""
        if not path.startswith(PREFIX):
            raise NotSure
        parts = path[len(PREFIX):].split("/")
        if _ID.fullmatch(parts[0]) is None:
            raise NotSure
        query = query_params(query_string)
        if query is None:
            raise NotSure
        member_id = parts[0]
        if len(parts) == 1:
            at = bounded_int(query.get("at"), TIME_MIN, TIME_MAX)
            return self.routes.summary, self.reads.summary, (member_id, at)
        if len(parts) == 2 and parts[1] == "licenses":
            at = bounded_int(query.get("at"), TIME_MIN, TIME_MAX)
            state = query.get("state")
            if state is not None and state not in LICENSE_STATES:
                raise NotSure
            return self.routes.licenses, self.reads.licenses, (member_id, state, at)
        if len(parts) == 4 and parts[1] == "titles" and parts[3] == "downloads" and _ID.fullmatch(parts[2]):
            year = bounded_int(query.get("year"), YEAR_MIN, YEAR_MAX)
            return self.routes.title_downloads, self.reads.title_downloads, (member_id, parts[2], year)
        raise NotSure

    def _handler(self, exc: Exception):
        """The handler FastAPI's ExceptionMiddleware would pick: the nearest class in the exception's
        MRO, short of ``Exception``, whose handler belongs to the server error middleware."""
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                return handler
        return None
