"""The read API (DOMAIN.md "Views" over HTTP): the Redis views, and a member's timeline.

``create_api(settings)`` builds the app; nothing is read from the environment here. Handlers stay
thin: one Redis read (``ViewReader``), then a pure function of ``app.domain.views``. The history and
the what-if are the only endpoints that read Cassandra (the event store, through the read-only
``HistoryReader``); its connection is opened at their first use, so the Redis endpoints keep working
while Cassandra is down (history and what-if then answer 503). Nothing here reads Kafka.

Auth (``auth.BearerAuth``, checked before routing and before any body is read): every path needs
``Authorization: Bearer <token>`` with a token of ``settings.api_token_set``, except ``/healthz``,
``/readyz``, ``/metrics``, ``/openapi.json`` and ``/docs``. Bodies over ``settings.api_max_body_bytes``
are refused (``body_limit.BodyLimit``). With ``settings.api_metrics_port``, ``/metrics`` is served only
on that port (``metrics_server``), from the socket the caller bound.
"""
# No `from __future__ import annotations`: FastAPI must resolve the closures' Annotated parameters.
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated

import orjson
import redis.asyncio
from fastapi import APIRouter, FastAPI, Path, Query
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import bootstrap
from app.adapters.json_events import decision_to_json
from app.adapters.redis.view_reader import DEFAULT_NAMESPACE_TTL
from app.adapters.redis.view_store import ACTIVE_NAMESPACE_KEY
from app.config import Settings
from app.domain import views
from app.domain.events import LicenseAcquired
from app.domain.state import MemberState
from app.domain.utc import year_of
from app.domain.validation import INT_MAX
from app.entrypoints.api import errors, tracing
from app.entrypoints.api.auth import BearerAuth, document_bearer
from app.entrypoints.api.body_limit import BodyLimit
from app.entrypoints.api.errors import ApiError
from app.entrypoints.api.fast_reads import FastReads, Reads, Routes
from app.entrypoints.api.metrics import ApiMetrics, MetricsMiddleware
from app.entrypoints.api.metrics_server import MetricsServer
from app.entrypoints.api.models import (
    HISTORY_LIMIT_MAX,
    ID_PATTERN,
    TIME_MAX,
    TIME_MIN,
    YEAR_MAX,
    YEAR_MIN,
    EligibilityRequest,
    EligibilityResponse,
    ErrorBody,
    Health,
    LicenseState,
    MemberHistory,
    MemberLicenses,
    MemberSummary,
    MemberWhatIf,
    Ready,
    TitleDownloads,
    WhatIfRequest,
)
from app.service.ports import HistoryReader
from app.service.whatif import Window, flip_dict

ID_RULE = "1-64 characters from [A-Za-z0-9._:-]"
MemberId = Annotated[str, Path(pattern=ID_PATTERN, description=ID_RULE, examples=["m-1"])]
TitleId = Annotated[str, Path(pattern=ID_PATTERN, description=ID_RULE, examples=["t-1"])]
At = Annotated[int | None, Query(ge=TIME_MIN, le=TIME_MAX,
                                 description="evaluate at this time, epoch milliseconds (default: now)")]
Year = Annotated[int | None, Query(ge=YEAR_MIN, le=YEAR_MAX, description="calendar year, UTC (default: this year)")]
StateFilter = Annotated[LicenseState | None, Query(alias="state", description="only licenses in this state at `at`")]
AfterSeq = Annotated[int | None, Query(ge=0, le=TIME_MAX, description="cursor: events after the position "
                                       "(after_seq, after_sub), as `next` gives it; a half left out is 0, "
                                       "both left out: from the first event")]
AfterSub = Annotated[int | None, Query(ge=0, le=INT_MAX, description="cursor: see after_seq")]
Limit = Annotated[int, Query(ge=1, le=HISTORY_LIMIT_MAX, description="events per page (at most 1,000)")]


def _error(description: str) -> dict:
    return {"model": ErrorBody, "description": description}


V1_ERRORS = {
    401: _error("missing or invalid bearer token"),
    413: _error("the request body is larger than LEDGER_API_MAX_BODY_BYTES"),
    422: _error("an identifier or parameter is invalid"),
    500: _error("unexpected server error (no traceback is exposed)"),
    503: _error("the view store (Redis) is unavailable; for history and what-if, the event store (Cassandra)"),
}
NOT_FOUND = {404: _error("no view of this member in the active namespace")}
NO_HISTORY = {404: _error("no decided event of this member in the event store")}


def view_response(payload: dict) -> Response:
    """A view answer encoded once by orjson: FastAPI returns a Response as it is, without validating
    it against the route's response model again (the model documents the shape; tests/unit/
    test_api_models.py holds the views to it). Used by the three reads that carry the load."""
    return Response(orjson.dumps(payload), media_type="application/json")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def create_api(
    settings: Settings,
    *,
    redis_client: redis.asyncio.Redis | None = None,
    pointer_key: str = ACTIVE_NAMESPACE_KEY,
    namespace_ttl: float = DEFAULT_NAMESPACE_TTL,
    now_ms: Callable[[], int] = wall_clock_ms,
    history: HistoryReader | None = None,
    metrics_socket: socket.socket | None = None,
    tracer_provider=None,
    fast_reads: bool = True,
) -> FastAPI:
    """The read API. Tests may pass their own client, a test-only pointer key, a clock, a history
    (default: the event store of ``settings``, connected at first use) and an OpenTelemetry tracer
    provider (default: the one of ``settings``, none when tracing is off). With
    ``settings.api_metrics_port`` set, ``/metrics`` is served on ``metrics_socket`` (bound by the
    caller) while the app runs, and not on the app's own port. ``fast_reads=False`` leaves the busy
    reads to FastAPI alone (``fast_reads.FastReads``), for tests that hold the two to the same answers."""
    owns_client = redis_client is None
    owned_history = bootstrap.history(settings) if history is None else None
    timeline: HistoryReader = history or owned_history
    whatif = bootstrap.whatif(timeline)
    reader = bootstrap.api_reader(settings, pointer_key=pointer_key, namespace_ttl=namespace_ttl, client=redis_client)
    client = reader.client
    metrics = ApiMetrics()
    tokens = settings.api_token_set
    separate_metrics = settings.api_metrics_port is not None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        metrics_server = None
        if separate_metrics and metrics_socket is not None:
            metrics_server = MetricsServer(metrics.registry, metrics_socket)
            metrics_server.start()
        try:
            yield
        finally:
            if metrics_server is not None:
                metrics_server.stop()
        if owns_client:
            await client.aclose()
        if owned_history is not None:
            await owned_history.aclose()

    app = FastAPI(
        title="Download Ledger read API",
        version="1",
        description="Member views of the Download Ledger, read from Redis, and each member's timeline "
                    "(history and what-if), read from the event store (Cassandra). "
                    "Errors are always {\"error\": {\"code\": ..., \"message\": ...}}.",
        lifespan=lifespan,
        redoc_url=None,
        # The API's telemetry is its Prometheus metrics and, when configured, tracing.instrument's
        # spans; FastAPI's native OpenTelemetry would look up the global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.reader = reader
    app.state.history = timeline
    app.state.metrics = metrics
    errors.install(app)

    async def known_member(member_id: str) -> MemberState:
        state = await reader.member(member_id)
        if state is None:
            raise ApiError(404, "member_not_found", f"member {member_id} has no view")
        return state

    async def summary(member_id: str, at: int | None) -> dict:
        state = await known_member(member_id)
        return views.summary(state, now_ms() if at is None else at)

    async def licenses(member_id: str, state_filter: str | None, at: int | None) -> dict:
        state = await known_member(member_id)
        at = now_ms() if at is None else at
        return {"member_id": member_id, "at": at, "seq": state.seq, "state": state_filter,
                "licenses": views.licenses(state, at, state_filter)}

    async def downloads(member_id: str, title_id: str, year: int | None) -> dict:
        state = await known_member(member_id)
        year = year_of(now_ms()) if year is None else year
        return {"member_id": member_id, "title_id": title_id, "year": year, "seq": state.seq,
                "downloads": views.title_year_count(state, title_id, year)}

    v1 = APIRouter(prefix="/v1", responses=V1_ERRORS, tags=["members"])

    @v1.get("/members/{member_id}", response_model=MemberSummary, responses=NOT_FOUND,
            summary="member summary at a time")
    async def member_summary(member_id: MemberId, at: At = None):
        return view_response(await summary(member_id, at))

    @v1.get("/members/{member_id}/licenses", response_model=MemberLicenses, responses=NOT_FOUND,
            summary="licenses of a member with their state at a time")
    async def member_licenses(member_id: MemberId, state_filter: StateFilter = None, at: At = None):
        return view_response(await licenses(member_id, state_filter, at))

    @v1.get("/members/{member_id}/titles/{title_id}/downloads", response_model=TitleDownloads,
            responses=NOT_FOUND, summary="downloads of a title by a member in a year")
    async def title_downloads(member_id: MemberId, title_id: TitleId, year: Year = None):
        return view_response(await downloads(member_id, title_id, year))

    @v1.post("/members/{member_id}/eligibility", response_model=EligibilityResponse,
             summary="would this LicenseAcquired be accepted?",
             description="Runs the decider's own rules (app.domain.views.eligibility) against the view, at "
                         "max(the member clock over every decided event, rejected ones too, `at`). "
                         "A member without a view is evaluated against the empty default state "
                         "(a new member may download), so this endpoint never answers 404.")
    async def eligibility(member_id: MemberId, body: EligibilityRequest):
        state = await reader.member_at_decider_clock(member_id) or MemberState.empty(member_id)
        at = now_ms() if body.at is None else body.at
        payload = LicenseAcquired(
            license_id=body.license_id or f"eligibility:{uuid.uuid4().hex}",
            device_id=body.device_id,
            title_id=body.title_id,
            studio_id=body.studio_id,
            expires_at=body.expires_at,
            title_yearly_limit=body.title_yearly_limit,
            studio_concurrent_limit=body.studio_concurrent_limit,
            max_renewals=body.max_renewals,
            download_quality=body.download_quality,
        )
        result = views.eligibility(state, payload, at)
        return {"member_id": member_id, "license_id": payload.license_id, "at": max(state.clock, at),
                "seq": state.seq, "eligible": result.eligible, "reason": result.reason, "detail": result.detail}

    @v1.get("/members/{member_id}/history", response_model=MemberHistory, responses=NO_HISTORY,
            tags=["timeline"], summary="every decided event of a member, in decision order",
            description="Accepted and rejected events as the event store keeps them, with reason, detail, the "
                        "member clock at decision, the event's fields and where it was read. Pages of `limit` "
                        "events; pass `next` back as `after_seq` and `after_sub`. Read from Cassandra.")
    async def member_history(member_id: MemberId, after_seq: AfterSeq = None, after_sub: AfterSub = None,
                             limit: Limit = 100):
        after = None if after_seq is None and after_sub is None else (after_seq or 0, after_sub or 0)
        page = await timeline.page(member_id, after, limit + 1)
        if not page and (after is None or not await timeline.page(member_id, None, 1)):
            raise ApiError(404, "member_not_found", f"member {member_id} has no decided event")
        more = len(page) > limit
        page = page[:limit]
        cursor = {"after_seq": page[-1].seq, "after_sub": page[-1].sub} if more else None
        return {"member_id": member_id, "events": [decision_to_json(d) for d in page], "next": cursor}

    @v1.post("/members/{member_id}/whatif", response_model=MemberWhatIf, responses=NO_HISTORY,
             tags=["timeline"], summary="the member's history decided again under a candidate policy",
             description="Decides the member's recorded events again, in order, from the empty state with the "
                         "policy's limits, and lists the events whose outcome changes, with the summary today "
                         "and under the policy. Writes nothing. Read from Cassandra.")
    async def member_whatif(member_id: MemberId, body: WhatIfRequest):
        window = Window(body.from_ms, body.to_ms)
        policy = body.policy.to_policy()
        result = await whatif.member(member_id, policy, window=window, keep_flips=body.max_flips)
        if not result.found and (body.to_ms is None or not await timeline.page(member_id, None, 1)):
            raise ApiError(404, "member_not_found", f"member {member_id} has no decided event")
        at = result.clock if body.at is None else body.at
        return {
            "member_id": member_id, "events_redecided": result.events, "flip_count": result.flip_count,
            "transitions": [{"recorded": a, "whatif": b, "count": n}
                            for (a, b), n in sorted(result.transitions.items(), key=lambda i: (-i[1], i[0]))],
            "flips": [flip_dict(f) for f in result.flips], "at": at,
            "today": views.summary(result.recorded, at), "under_policy": views.summary(result.whatif, at, policy),
        }

    app.include_router(v1)
    document_bearer(app, "/v1/", "one of the tokens of LEDGER_API_TOKENS(_FILE)")

    @app.get("/healthz", response_model=Health, tags=["operations"], summary="the process is alive (no Redis)")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", response_model=Ready, tags=["operations"],
             responses={503: _error("Redis unreachable, or the active namespace has no member views")},
             summary="Redis reachable and the active namespace holds views")
    async def readyz():
        namespace, members = await reader.member_count()
        if members == 0:
            raise ApiError(503, "no_views", f"the active namespace {namespace!r} holds no member views")
        return {"status": "ready", "namespace": namespace, "members": members}

    if not separate_metrics:
        @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"],
                 summary="Prometheus metrics: requests and latency by route and status")
        async def metrics_endpoint():
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # The last added runs first: metrics count every answer, then auth, then the body limit, then
    # the busy reads' fast path.
    if fast_reads:
        route_of = {route.endpoint: route for route in v1.routes}
        app.add_middleware(FastReads, reads=Reads(summary, licenses, downloads),
                           routes=Routes(route_of[member_summary], route_of[member_licenses],
                                         route_of[title_downloads]),
                           exception_handlers=app.exception_handlers)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(BearerAuth, tokens=tokens, routes=app.router.routes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    provider = tracer_provider or bootstrap.tracer_provider(settings, "api")
    if provider is not None:
        tracing.instrument(app, client, provider)
    return app

