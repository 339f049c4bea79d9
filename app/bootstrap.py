"""The composition root: the one place that turns Settings into connected adapters and services.

Entrypoints (the Faust worker, the read API, the CLI commands) and the developer tools ask this
module for what they run; nothing else constructs an adapter. Connections are opened here with
their timeouts, and closed by whoever asked for them (``close``/``aclose``).
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from app.adapters.avro.mapping import AvroMessageCodec
from app.adapters.cassandra import namespaces as cassandra_namespaces
from app.adapters.cassandra import session as cassandra_session
from app.adapters.cassandra.event_store import CassandraEventStore
from app.adapters.cassandra.progress_store import CassandraProgressStore
from app.adapters.cassandra.read_models import CassandraReadModels
from app.adapters.kafka import topic_admin
from app.adapters.kafka.connection import KafkaConnection
from app.adapters.kafka.lag import ConsumerLag
from app.adapters.kafka.ledger_reader import LedgerReader
from app.adapters.kafka.outbox import KafkaOutbox, OutputTopics
from app.adapters.kafka.producer import BatchProducer
from app.adapters.kafka.publisher import EventPublisher
from app.adapters.redis import namespaces as redis_namespaces
from app.adapters.redis.member_clocks import RedisMemberClocks
from app.adapters.redis.projector_acks import RedisProjectorAcks
from app.adapters.redis.prompt_writes import prompt_writes
from app.adapters.redis.replay_records import RedisReplayRecords
from app.adapters.redis.view_reader import DEFAULT_NAMESPACE_TTL, ViewReader
from app.adapters.redis.view_store import ACTIVE_NAMESPACE_KEY, RedisViewStore
from app.config import ConfigError, Settings
from app.domain.history import StoredDecision
from app.service.decider import Decider
from app.service.member_cache import loaded_state_cache
from app.service.member_clocks import ClockProjector
from app.service.ports import HistoryReader, HistoryUnavailable, Tracer
from app.service.projector import Projector
from app.service.replay import Replay, ReplayObserver, ReplayStores
from app.service.tracing import NO_TRACER
from app.service.verify import Verifier
from app.service.whatif import WhatIf

REDIS_TIMEOUT_S = 5.0  # every Redis call of a worker, the replay or the API gives up after this


# On a Redis Cluster, a command whose master is gone is tried again this many times, each after
# re-reading the slot map (a replica is promoted within about cluster-node-timeout + 1.5 s), with
# pauses of 0.25, 0.5, 1, 1 s...: a failover costs a slow answer rather than an error where it can.
CLUSTER_RETRIES = 6


def kafka_connection(settings: Settings) -> KafkaConnection:
    """Every Kafka client's brokers, TLS and login (LEDGER_KAFKA_*)."""
    return KafkaConnection(
        settings.kafka_bootstrap, settings.kafka_security_protocol, settings.kafka_sasl_mechanism,
        settings.kafka_sasl_username, settings.kafka_sasl_password, settings.kafka_ssl_ca_file,
        settings.kafka_ssl_cert_file, settings.kafka_ssl_key_file)


def redis_security(settings: Settings) -> dict[str, Any]:
    """The login and TLS options of a redis-py client (the URL's own user and password otherwise)."""
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_tls:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_file) if settings.redis_ssl_ca_file else None
        if settings.redis_ssl_cert_file:
            options["ssl_certfile"] = str(settings.redis_ssl_cert_file)
            options["ssl_keyfile"] = str(settings.redis_ssl_key_file)
    return options


def redis_client(settings: Settings, *, timeout_s: float = REDIS_TIMEOUT_S, immediate_retry: bool = False):
    """A pooled asyncio client with connect and socket timeouts (hiredis parses replies): a
    ``redis.asyncio.Redis``, or a ``redis.asyncio.cluster.RedisCluster`` when the settings name a
    cluster (``redis+cluster://`` or LEDGER_REDIS_CLUSTER=1). The adapters take either."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff, NoBackoff

    nodes = settings.redis_cluster_nodes
    if nodes is not None:
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes],
                            retry=Retry(ExponentialBackoff(cap=1.0, base=0.25), CLUSTER_RETRIES),
                            **_redis_options(settings, timeout_s, cluster=True))
    extra = {"retry": Retry(NoBackoff(), 1)} if immediate_retry else {}  # a pooled connection may be stale
    return aioredis.Redis.from_url(settings.redis_url, **_redis_options(settings, timeout_s, cluster=False), **extra)


def redis_sync_client(settings: Settings, url: str | None = None, *, timeout_s: float = REDIS_TIMEOUT_S):
    """A blocking client with the settings' login and TLS, for the tools and the tests: of one Redis
    (``url``, default LEDGER_REDIS_URL), or a ``redis.cluster.RedisCluster`` when no ``url`` is given
    and the settings name a cluster."""
    import redis

    nodes = settings.redis_cluster_nodes
    if url is None and nodes is not None:
        from redis.cluster import ClusterNode, RedisCluster

        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes],
                            **_redis_options(settings, timeout_s, cluster=True))
    return redis.Redis.from_url(url or settings.redis_url, **_redis_options(settings, timeout_s, cluster=False))


def _redis_options(settings: Settings, timeout_s: float, *, cluster: bool) -> dict:
    """Timeouts, login and TLS of every Redis client of ours (a URL carries TLS as rediss://; a
    cluster client is told with ssl=True)."""
    tls = {"ssl": True} if cluster and settings.redis_tls else {}
    return {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s, **tls, **redis_security(settings)}


def transient_errors() -> tuple[type[BaseException], ...]:
    """Store errors worth retrying for idempotent work (reads, writes fenced by seq)."""
    return cassandra_namespaces.transient_errors() + redis_namespaces.transient_errors()


@dataclass
class Stores:
    """Open connections to Cassandra and Redis, and the adapters built on them."""

    settings: Settings
    cluster: object
    session: object
    redis: object
    codec: AvroMessageCodec = field(default_factory=AvroMessageCodec)

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        """Blocking (connects to Cassandra); raises the drivers' errors when a store is unreachable."""
        cluster, session = cassandra_session.connect(settings)
        if settings.count_statements_to is not None:
            from app.adapters.cassandra.counting import CountingSession

            session = CountingSession(session, settings.count_statements_to)
        return cls(settings, cluster, session, redis_client(settings))

    @property
    def keyspace(self) -> str:
        return self.settings.cassandra_keyspace

    def event_store(self) -> CassandraEventStore:
        return CassandraEventStore(self.session, self.keyspace)

    def progress_store(self) -> CassandraProgressStore:
        return CassandraProgressStore(self.session, self.keyspace)

    def views(self, ns: str) -> RedisViewStore:
        return RedisViewStore(self.redis, ns)

    def read_models(self, ns: str) -> CassandraReadModels:
        return CassandraReadModels(self.session, self.keyspace, ns)

    def pointer(self) -> redis_namespaces.RedisNamespacePointer:
        return redis_namespaces.RedisNamespacePointer(self.redis)

    def namespace_stores(self) -> list:
        return [redis_namespaces.RedisNamespaces(self.redis),
                cassandra_namespaces.CassandraNamespaces(self.session, self.keyspace)]

    def ledger_reader(self) -> LedgerReader:
        return LedgerReader(kafka_connection(self.settings), self.settings.ledger_topic)

    # --- services --------------------------------------------------------------------------

    def decider(self, outbox: KafkaOutbox, event_store: CassandraEventStore | None = None,
                tracer: Tracer = NO_TRACER) -> Decider:
        s = self.settings
        return Decider(event_store or self.event_store(), self.progress_store(), outbox, self.codec,
                       loaded_state_cache(s.member_cache_size, s.member_cache_bytes), s.snapshot_every,
                       max_future_skew_ms=s.max_future_skew_ms, tracer=tracer)

    def projector(self, event_store: CassandraEventStore | None = None, tracer: Tracer = NO_TRACER) -> Projector:
        """A live projector: it acknowledges the namespace it writes, as a worker id of its own."""
        return Projector(event_store or self.event_store(), self.codec, self.views, self.read_models,
                         self.pointer(), cache_size=self.settings.member_cache_size,
                         cache_bytes=self.settings.member_cache_bytes, progress=self.progress_store(),
                         acks=RedisProjectorAcks(self.redis), worker_id=projector_id(),
                         ack_ttl_s=self.settings.projector_ack_ttl_s, tracer=tracer)

    def member_clocks(self) -> RedisMemberClocks:
        return RedisMemberClocks(self.redis)

    def clock_projector(self) -> ClockProjector:
        return ClockProjector(self.codec, self.member_clocks(), self.progress_store())

    def replay(self, observer: ReplayObserver | None = None, *,
               ledger: Callable[[], object] | None = None, **options) -> Replay:
        stores = ReplayStores(
            event_store=self.event_store(), codec=self.codec, pointer=self.pointer(),
            namespaces=self.namespace_stores(), views_for=self.views, read_models_for=self.read_models,
            ledger=ledger or self.ledger_reader, records=RedisReplayRecords(self.redis),
            acks=RedisProjectorAcks(self.redis), transient=transient_errors())
        # Readers hold no acknowledgement; the read API re-reads the pointer within its cache's TTL.
        options.setdefault("drop_grace_s", 2 * DEFAULT_NAMESPACE_TTL)
        return Replay(stores, observer=observer, topic=self.settings.ledger_topic,
                      member_cache_size=self.settings.member_cache_size,
                      member_cache_bytes=self.settings.member_cache_bytes, **options)

    def verifier(self, ns: str, concurrency: int = 4) -> Verifier:
        return Verifier(self.event_store(), self.views(ns), self.read_models(ns),
                        concurrency=concurrency, transient=transient_errors())

    async def aclose(self) -> None:
        await self.redis.aclose()
        self.cluster.shutdown()


def projector_id() -> str:
    """A live projector's name in the acknowledgements: host, process and a random part (process ids
    repeat across containers and restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def cassandra(settings: Settings) -> tuple[object, object]:
    """(cluster, session) of ``settings``, for the commands that only run statements (migrate)."""
    return cassandra_session.connect(settings)


def kafka_admin(settings: Settings):
    return topic_admin.admin_client(kafka_connection(settings))


def event_publisher(settings: Settings, topic: str | None = None, **producer_overrides) -> EventPublisher:
    """The publisher upstream services use (and `ledger publish`, the simulator, the tests); with
    tracing on, each event published starts a trace (a producer span, its context in the record's
    ``traceparent`` header)."""
    return EventPublisher(kafka_connection(settings), topic or settings.events_topic,
                          instrument=producer_instrumentation(settings), **producer_overrides)


# --- tracing (LEDGER_TRACING / OTEL_EXPORTER_OTLP_ENDPOINT; off by default) ---------------------

_providers: dict[str, object] = {}


def tracer_provider(settings: Settings, component: str):
    """The process's OpenTelemetry tracer provider for ``component`` (worker, api, publish), made
    once; None when tracing is off, and then nothing of OpenTelemetry is imported."""
    exporter = settings.tracing_exporter
    if exporter is None:
        return None
    key = f"{component}|{exporter}"
    if key not in _providers:
        from app.adapters.otel.provider import TracingConfigError
        from app.adapters.otel.provider import tracer_provider as make

        try:
            _providers[key] = make(exporter, component)
        except TracingConfigError as exc:
            raise ConfigError(str(exc)) from None
    return _providers[key]


def tracer(settings: Settings, component: str) -> Tracer:
    """The services' tracer: OpenTelemetry when tracing is on, else one that does nothing."""
    provider = tracer_provider(settings, component)
    if provider is None:
        return NO_TRACER
    from app.adapters.otel.batch_tracer import OtelTracer

    return OtelTracer(provider)


def producer_instrumentation(settings: Settings, provider=None):
    """A wrapper of confluent-kafka producers that traces each record produced (OpenTelemetry's
    instrumentation), or None when tracing is off and no ``provider`` is given."""
    provider = provider or tracer_provider(settings, "publish")
    if provider is None:
        return None
    from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor

    return lambda producer: ConfluentKafkaInstrumentor.instrument_producer(producer, tracer_provider=provider)


# --- consumer groups, lag and dead letters ----------------------------------------------------

ROLES = ("decider", "projector", "all")


def group_id(settings: Settings, role: str) -> str:
    """The consumer group (and Faust app id) of the workers of ``role``."""
    return f"{settings.consumer_group}-{role}"


def role_topics(settings: Settings, role: str) -> dict[str, str]:
    """{topic: stage} that the workers of ``role`` consume: the decider reads the input topic, the
    projector role the ledger (stage projector) and the rejections (stage clocks: member clocks)."""
    topics = {}
    if role in ("decider", "all"):
        topics[settings.events_topic] = "decider"
    if role in ("projector", "all"):
        topics[settings.ledger_topic] = "projector"
        topics[settings.rejections_topic] = "clocks"
    return topics


def worker_groups(settings: Settings) -> dict[str, dict[str, str]]:
    """Every worker role's group id and the topics it consumes ({topic: stage})."""
    return {group_id(settings, role): role_topics(settings, role) for role in ROLES}


def consumer_lag(settings: Settings, timeout_s: float = 5.0) -> ConsumerLag:
    return ConsumerLag(kafka_connection(settings), timeout_s=timeout_s)


def dead_letter_reader(settings: Settings) -> LedgerReader:
    """A bounded reader of the DLQ topic (no group, no commits), like the replay's of the ledger."""
    return LedgerReader(kafka_connection(settings), settings.dlq_topic, batch_size=1000,
                        log_level=0)  # an unreachable cluster is one error line, not librdkafka's log


def output_topics(settings: Settings) -> OutputTopics:
    return OutputTopics(settings.ledger_topic, settings.rejections_topic, settings.dlq_topic)


def producer(settings: Settings) -> BatchProducer:
    return BatchProducer(kafka_connection(settings), max_message_bytes=settings.kafka_max_message_bytes)


@dataclass
class WorkerServices:
    """What one `ledger worker` process runs: the decider and/or the projector, on shared connections."""

    stores: Stores
    producer: BatchProducer | None
    decider: Decider | None
    projector: Projector | None
    clocks: ClockProjector | None = None

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close()
        if hasattr(self.stores.session, "flush"):  # a CountingSession: the last counts
            self.stores.session.close()
        self.stores.cluster.shutdown()


def worker_services(settings: Settings, role: str) -> WorkerServices:
    stores = Stores.open(settings)
    event_store = stores.event_store()
    decider = projector = clocks = kafka_producer = None
    traced = tracer(settings, "worker")
    if role in ("decider", "all"):
        kafka_producer = producer(settings)
        decider = stores.decider(KafkaOutbox(kafka_producer, output_topics(settings)), event_store, traced)
    if role in ("projector", "all"):
        projector = stores.projector(event_store, traced)
        clocks = stores.clock_projector()
    return WorkerServices(stores, kafka_producer, decider, projector, clocks)


def api_reader(settings: Settings, *, pointer_key: str = ACTIVE_NAMESPACE_KEY,
               namespace_ttl: float = DEFAULT_NAMESPACE_TTL, client=None) -> ViewReader:
    """The read API's view reader; its Redis client retries once at once (a stale pooled connection)
    and writes its commands without a Task each (``prompt_writes``)."""
    client = client or prompt_writes(redis_client(settings, timeout_s=1.0, immediate_retry=True))
    return ViewReader(client, pointer_key=pointer_key, namespace_ttl=namespace_ttl)


# --- the history and the what-if: the event store, read only -----------------------------------


class LazyHistory:
    """A HistoryReader on a Cassandra connection opened at its first use: the read API's history and
    what-if (its Redis endpoints never wait for, or fail with, Cassandra), `ledger history` and
    `ledger whatif`. Only reads are reachable through it.

    Whatever keeps it from reading (no connection, a missing keyspace, a driver error or timeout)
    raises HistoryUnavailable. After a failed connection attempt the next one waits ``retry_s``;
    calls meanwhile fail at once, so a down Cassandra costs callers no connect timeout each."""

    def __init__(self, settings: Settings, *, retry_s: float = 2.0):
        self.settings = settings
        self.retry_s = retry_s
        self._lock = asyncio.Lock()
        self._cluster: Any = None
        self._store: CassandraEventStore | None = None
        self._retry_at = float("-inf")
        self._error = ""

    def _connect(self) -> tuple[object, CassandraEventStore]:
        cluster, session = cassandra_session.connect(self.settings)
        try:
            return cluster, CassandraEventStore(session, self.settings.cassandra_keyspace)
        except Exception:
            cluster.shutdown()
            raise

    async def store(self) -> CassandraEventStore:
        if self._store is not None:
            return self._store
        async with self._lock:
            if self._store is None:
                if time.monotonic() < self._retry_at:
                    raise HistoryUnavailable(self._error)
                try:
                    self._cluster, self._store = await asyncio.to_thread(self._connect)
                except Exception as exc:
                    self._retry_at = time.monotonic() + self.retry_s
                    self._error = (f"cannot read the event store (Cassandra at {self.settings.cassandra_hosts}, "
                                   f"keyspace {self.settings.cassandra_keyspace}): {type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())}")
                    raise HistoryUnavailable(self._error) from exc
        return self._store

    async def page(self, member_id: str, after: tuple[int, int] | None, limit: int) -> list[StoredDecision]:
        store = await self.store()
        try:
            return await store.page(member_id, after, limit)
        except cassandra_namespaces.transient_errors() as exc:
            raise HistoryUnavailable(f"reading the event store failed: {type(exc).__name__}: {exc}") from exc

    async def stream_member_ids(self) -> AsyncIterator[str]:
        store = await self.store()
        try:
            async for member_id in store.stream_member_ids():
                yield member_id
        except cassandra_namespaces.transient_errors() as exc:
            raise HistoryUnavailable(f"reading the event store failed: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        cluster, self._cluster, self._store = self._cluster, None, None
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)


def history(settings: Settings) -> LazyHistory:
    """The event store, read only, connected at first use (close it with ``aclose``)."""
    return LazyHistory(settings)


def whatif(history_reader: HistoryReader, *, concurrency: int = 32) -> WhatIf:
    return WhatIf(history_reader, concurrency=concurrency)
