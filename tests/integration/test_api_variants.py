"""The read API's measuring tools. `python -m tools.bench.api_variants` writes its views straight to
Redis, beside the worker's code path: a change of the view keys broke it once without a test
noticing. Its writer must leave views that the API's own reader finds."""
from __future__ import annotations

import asyncio

import pytest

from app.adapters.redis.view_reader import ViewReader
from app.bootstrap import redis_client, redis_sync_client
from app.config import Settings
from app.domain.state import MemberState
from app.domain.views import digest
from tests.support.domain_builders import event, plan, run
from tools.bench.api_variants import write_views

pytestmark = pytest.mark.stack

REDIS_DB = 6  # the e2e tests use 10-15, a full `make bench` 9, the bench tests 7-8


def test_the_views_it_writes_are_the_ones_the_api_reads():
    settings = Settings()
    settings = settings.model_copy(update={"redis_url": settings.redis_url_for(REDIS_DB)})
    states = {f"m{i}": run([event(plan(device_limit=i + 1), member=f"m{i}")], MemberState.empty(f"m{i}"))[1]
              for i in range(3)}
    sync = redis_sync_client(settings, settings.redis_url)
    sync.flushdb()
    try:
        write_views(settings, settings.redis_url, states)

        async def read():
            client = redis_client(settings)
            try:
                reader = ViewReader(client)
                return await reader.member_count(), {m: await reader.member(m) for m in states}
            finally:
                await client.aclose()

        (namespace, count), got = asyncio.run(read())
        assert (namespace, count) == ("v1", 3)
        assert {m: digest(s) for m, s in got.items()} == {m: digest(s) for m, s in states.items()}
    finally:
        sync.flushdb()
        sync.close()


def test_the_in_process_measure_answers_every_request_with_200(capsys):
    """`python -m tools.bench.api_inprocess` on a small workload: each request of the bench's mix is
    answered 200 (a 404 or 422 would mean it measures the wrong thing), and its database is left empty."""
    from tools.bench import api_inprocess

    assert api_inprocess.main(["--members", "50", "--events", "200", "--requests", "300", "--rounds", "1",
                               "--redis-db", str(REDIS_DB)]) == 0
    out = capsys.readouterr().out
    assert "us of CPU per request over 300 requests (statuses {200: 300})" in out
    settings = Settings()
    assert redis_sync_client(settings, settings.redis_url_for(REDIS_DB)).dbsize() == 0
