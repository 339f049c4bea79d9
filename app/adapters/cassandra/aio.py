"""cassandra-driver futures as asyncio awaitables (the driver calls back on its own thread)."""
from __future__ import annotations

import asyncio


def execute(session, statement, params=None, timeout: float | None = None) -> asyncio.Future:
    """Runs a statement and resolves to the list of all rows (every page).

    ``timeout`` None keeps the execution profile's request_timeout (app/adapters/cassandra/session.py):
    the driver itself reads an explicit ``timeout=None`` as "no timeout at all", and a statement
    to a node that never answers would then hang its batch forever."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    options = {} if timeout is None else {"timeout": timeout}
    response = session.execute_async(statement, params, **options)
    rows: list = []

    def on_rows(page):
        rows.extend(page or ())
        if response.has_more_pages:
            response.start_fetching_next_page()
        else:
            _call_soon(loop, _resolve, future, rows)

    def on_error(exc):
        _call_soon(loop, _fail, future, exc)

    response.add_callbacks(on_rows, on_error)
    return future


async def pages(session, statement, params=None):
    """Runs a statement and yields its rows a page at a time: the next page is fetched only when the
    caller asks for it, so a scan holds one page (the statement's ``fetch_size``) at a time."""
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue = asyncio.Queue()
    response = session.execute_async(statement, params)

    def on_rows(page):
        _call_soon(loop, arrived.put_nowait, (list(page or ()), response.has_more_pages, None))

    def on_error(exc):
        _call_soon(loop, arrived.put_nowait, ([], False, exc))

    response.add_callbacks(on_rows, on_error)
    while True:
        rows, more, exc = await arrived.get()
        if exc is not None:
            raise exc
        yield rows
        if not more:
            return
        response.start_fetching_next_page()


def _call_soon(loop, callback, *args) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop closed while the query ran: nobody is waiting any more
        pass


def _resolve(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
