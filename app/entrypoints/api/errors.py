"""One error shape for every failure: ``{"error": {"code": ..., "message": ...}}``.

FastAPI's own validation body is replaced (422 ``validation_error`` with ``details``; a body that does
not even decode, FastAPI's 400, is a 422 too); Starlette's
HTTP errors (404 unknown route, 405) get the same shape; Redis, or for the timeline the event store,
unreachable is a 503; anything
unexpected is a 500 without a traceback in the body.
"""
from __future__ import annotations

import logging
from http import HTTPStatus

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.adapters.redis.view_reader import ViewCorrupt
from app.service.ports import HistoryUnavailable

log = logging.getLogger("ledger.api")

_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
          503: "unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   details: list[dict] | None = None) -> JSONResponse:
    error: dict = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _location(loc) -> str:
    return ".".join(str(part) for part in loc) or "request"


def _message(err: dict) -> str:
    if err.get("type") == "string_pattern_mismatch":
        return "must be 1-64 characters from [A-Za-z0-9._:-]"
    return str(err.get("msg", "invalid"))


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [{"location": _location(e.get("loc", ())), "message": _message(e)} for e in exc.errors()]
    message = "; ".join(f"{d['location']}: {d['message']}" for d in details) or "invalid request"
    return error_response(422, "validation_error", message, details=details)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    if status == 400:  # FastAPI: a body that does not decode; bad input is a 422 like any other
        message = "body: could not be parsed as JSON"
        return error_response(422, "validation_error", message,
                              details=[{"location": "body", "message": "could not be parsed as JSON"}])
    code = _CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    return error_response(status, code, message, getattr(exc, "headers", None))


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unavailable: %s", exc)
    return error_response(503, "redis_unavailable", "the view store (Redis) is unavailable; retry later")


async def _history_down(request: Request, exc: HistoryUnavailable) -> JSONResponse:
    log.warning("event store unavailable: %s", exc)
    return error_response(503, "event_store_unavailable", "the event store (Cassandra) is unavailable; retry later")


async def _view_corrupt(request: Request, exc: ViewCorrupt) -> JSONResponse:
    log.error("%s", exc)
    return error_response(500, "view_corrupt", "the stored view of this member cannot be read")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(redis.exceptions.ConnectionError, _redis_down)
    app.add_exception_handler(redis.exceptions.TimeoutError, _redis_down)
    app.add_exception_handler(HistoryUnavailable, _history_down)
    # A Redis Cluster failing over: the slot has no master yet (CLUSTERDOWN, TRYAGAIN, not covered).
    app.add_exception_handler(redis.exceptions.ClusterError, _redis_down)
    app.add_exception_handler(redis.exceptions.TryAgainError, _redis_down)
    app.add_exception_handler(redis.exceptions.SlotNotCoveredError, _redis_down)
    app.add_exception_handler(ViewCorrupt, _view_corrupt)
    app.add_exception_handler(Exception, _unexpected)
