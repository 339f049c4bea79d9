"""A request body limit as a pure ASGI middleware: a larger body is a 413, and no more than the limit is read.

A ``Content-Length`` over the limit is refused from the headers alone. A chunked body is counted as
it streams in, whatever length it also declares (h11 reads such a request as chunked and hands the
app both headers); the chunk that crosses the limit ends the request with a 413. Any other HTTP/1
request passes through untouched: its body is the declared length, or there is none (a GET), so
counting it would only cost every read a wrapper.
"""
from __future__ import annotations

from starlette.exceptions import HTTPException

from app.entrypoints.api.errors import error_response

CODE = "body_too_large"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, too_large(limit))


def too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


def streamed(headers) -> bool:
    return any(name.lower() == b"transfer-encoding" for name, _ in headers)


def declared_length(headers) -> int | None:
    """The Content-Length, or None if absent; -1 if unusable (uvicorn refuses those before us)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            return int(value) if value.strip().isdigit() else -1
    return None


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope["headers"])
        if length is not None and length > self.max_bytes:
            await error_response(413, CODE, too_large(self.max_bytes))(scope, receive, send)
            return
        if scope.get("http_version") in ("1.0", "1.1") and not streamed(scope["headers"]):
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # FastAPI passes an HTTPException on as it is
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await error_response(413, CODE, too_large(self.max_bytes))(scope, receive, send)
