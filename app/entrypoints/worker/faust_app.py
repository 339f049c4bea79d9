"""The Faust worker: the decider agent on the input topic and the projector agent on the ledger.

Faust stops at this module (nothing else imports it): each agent turns a micro-batch of Faust
events into ``InputMessage``s and hands it to a service built by `app.bootstrap`. Faust
acknowledges the events of a batch once the loop body returned (``take_events`` acks after it).
The projectors return when the batch is durable. The decider returns once the batch's decisions
are durable, with its publish and progress still in flight (`PublishPipeline`), so its committed
offsets may pass outputs not yet published. On every assignment each partition of a topic with
durable progress is therefore sought back to that progress when the committed offset is ahead of it
(Faust has also had bugs committing offsets of in-flight events).

Faust can also skip messages of a partition a worker keeps across a rebalance; every batch therefore
passes through the topic's `PartitionPositions` first, which hands each service its partitions'
messages contiguously and seeks back what was skipped (see that module).

That seek is an extension, not a supported hook: Faust seeks every assigned partition to its
committed offset (``Consumer.perform_seek`` -> ``seek_to_committed``) *after* the
``on_partitions_assigned`` signal and ``on_rebalance_complete`` have run, so a seek made in a
signal handler would be undone. We therefore wrap the consumer's public ``seek_to_committed``;
tests/e2e/test_durable_progress.py fails if an upgrade changes that order. Every seek goes through
the consumer's ``seek_wait``, which runs it on the consumer's own thread: its ``seek`` changes
aiokafka's fetcher from the caller's thread, and a seek while the fetcher hands out records crashed
a worker (``KeyError`` in ``Fetcher.fetched_records``, bench run of 2026-11-30). The idle check reads
Faust's read offset per partition (``Consumer._read_offset``, the offset of the last message it
delivered to a stream), the one private attribute used here; tests/e2e/test_partition_positions.py
fails if it goes.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time

import faust
from faust.types import TP

from app.adapters.kafka.connection import KafkaConnection
from app.adapters.kafka.offset_probe import OffsetProbe, ProbeError
from app.bootstrap import WorkerServices, group_id, kafka_connection
from app.config import Settings
from app.entrypoints.worker.positions import PartitionPositions, ProbeFailed
from app.observability import (
    WorkerHealth,
    record_decider_batch,
    record_projector_batch,
    record_publish_to_view,
    record_seek_back,
)
from app.service.decider import DecidedBatch, Decider
from app.service.member_clocks import ClockProjector
from app.service.ports import InputMessage, ProgressStore
from app.service.projector import Projector
from app.service.publish_pipeline import PublishPipeline
from app.service.retry import Backoff

log = logging.getLogger(__name__)

ROLES = ("decider", "projector", "all")
STOP_TIMEOUT_EXIT = 3
IDLE_CHECK_S = 5.0  # how often idle partitions are checked for records they were never handed
SETTLE_TIMEOUT_S = 10.0  # how long a revocation or a stop waits for the decider's publish in flight


def new_faust_app(settings: Settings, app_id: str) -> faust.App:
    """A Faust app on our cluster: no web server, no tables, no topics declared by Faust (they come
    from `ledger topics apply`), group liveness from LEDGER_SESSION_TIMEOUT_S.

    One fetch hands over at most LEDGER_BATCH_SIZE records (``broker_max_poll_records``). Faust's
    fetch loop waits on a stream's full buffer for each record of a fetch; unbounded, one fetch held
    thousands of input events and the projector was handed nearly nothing while an input backlog
    lasted. Bounded, a buffer under pressure only takes its partitions out of the next fetches.

    With LEDGER_CONSUMER_GROUP_INSTANCE_ID the consumer is a static member of its group (KIP-345):
    faust-streaming passes ``consumer_group_instance_id`` to aiokafka's ``AIOKafkaConsumer(
    group_instance_id=...)``, which then sends no LeaveGroup on stop, so a worker restarted within
    the session timeout gets its partitions back with no rebalance of the others."""
    group_timing = {"broker_session_timeout": settings.session_timeout_s,
                    "broker_heartbeat_interval": settings.heartbeat_interval_s
                    or max(1.0, settings.session_timeout_s / 5)}
    if settings.rebalance_timeout_s is not None:
        group_timing["broker_rebalance_timeout"] = settings.rebalance_timeout_s
    # aiokafka refuses a session timeout above its request timeout (Faust's default 90 s).
    group_timing["broker_request_timeout"] = max(90.0, settings.session_timeout_s + 30)
    instance = settings.consumer_group_instance_id
    connection = kafka_connection(settings)
    return faust.App(
        app_id,
        broker=f"kafka://{connection.bootstrap}",
        broker_credentials=faust_credentials(connection),
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=f"{instance}-{app_id}" if instance else None,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
        broker_max_poll_records=settings.batch_size,
        **group_timing,
    )


def faust_credentials(connection: KafkaConnection) -> faust.auth.Credentials | None:
    """The connection as Faust's credentials, which it hands to every aiokafka client it makes."""
    if connection.sasl:
        assert connection.password is not None
        return faust.SASLCredentials(username=connection.username, password=connection.password.get_secret_value(),
                                     ssl_context=connection.ssl_context(), mechanism=connection.sasl_mechanism)
    if connection.tls:
        return faust.SSLCredentials(connection.ssl_context())
    return None


class _BoundedStopWorker(faust.Worker):
    """A Faust worker whose stop is bounded: Faust's graceful stop waits for the messages in flight
    to be processed, which never happens while a batch is being retried (a store down), so a
    watchdog started by the first SIGTERM or SIGINT ends the process after ``stop_timeout_s``.

    Ending abruptly is safe: every effect is conditional or fenced, and both roles resume from their
    durable progress, whatever offsets Faust acknowledged on its way out. ``_schedule_shutdown`` is
    mode's handler for both signals (an extension point, not a documented hook; the stop tests in
    tests/e2e/test_stop_and_progress.py fail if an upgrade changes it)."""

    def __init__(self, app: faust.App, *, stop_timeout_s: float, **kwargs):
        super().__init__(app, **kwargs)
        # No start-up spinner: to feed it, Faust sets the root logger to DEBUG and never sets it
        # back, so every library's log.debug would build a record for the worker's whole life.
        self.spinner = None
        self.stop_timeout_s = stop_timeout_s
        self._watchdog: threading.Timer | None = None

    def _schedule_shutdown(self, signal) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Timer(self.stop_timeout_s, _exit_now, (self.stop_timeout_s,))
            self._watchdog.daemon = True
            self._watchdog.start()
        super()._schedule_shutdown(signal)


def _exit_now(timeout_s: float) -> None:
    log.error("the worker did not stop within %.0fs (a batch in flight cannot finish); exiting now", timeout_s)
    logging.shutdown()
    os._exit(STOP_TIMEOUT_EXIT)


def run_worker(app: faust.App, loglevel: str, stop_timeout_s: float) -> None:
    """Run the app in this process until it is stopped (SIGTERM, Ctrl-C), at most ``stop_timeout_s``
    after the signal."""
    _BoundedStopWorker(app, stop_timeout_s=stop_timeout_s, loglevel=loglevel.upper(),
                       quiet=True).execute_from_commandline()


def stages_of(role: str) -> tuple[str, ...]:
    """The stages (agents) a worker of ``role`` runs."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    projector = ("projector", "clocks")
    return {"decider": ("decider",), "projector": projector, "all": ("decider", *projector)}[role]


def create_worker_app(settings: Settings, role: str, services: WorkerServices,
                      health: WorkerHealth | None = None) -> faust.App:
    """``health`` learns of every batch and of the first assignment (one is made when not given)."""
    if health is None:
        health = WorkerHealth(stages_of(role), settings.stall_timeout_s)
    app = new_faust_app(settings, group_id(settings, role))
    within = settings.batch_wait_ms / 1000
    durable: dict[str, ProgressStore] = {}
    guards = _Guards(app, settings)
    if services.decider is not None:
        _add_decider(app, settings, services.decider, within, health, guards)
        durable[settings.events_topic] = services.decider.progress
    if services.projector is not None:
        _add_projector(app, settings, services.projector, within, health, guards)
        if services.projector.progress is not None:
            durable[settings.ledger_topic] = services.projector.progress
    if services.clocks is not None:
        _add_clock_projector(app, settings, services.clocks, within, health, guards)
        if services.clocks.progress is not None:
            durable[settings.rejections_topic] = services.clocks.progress
    for topic in durable:  # a topic's positions start where its durable progress sends its partitions
        guards.add(topic)
    _seek_to_durable_progress(app, durable, guards)
    guards.watch_idle_partitions()

    @app.on_partitions_assigned.connect
    async def note_assignment(sender, assigned, **kwargs):
        # One line per assignment (each one follows a rebalance): the rolling-restart test counts them.
        log.info("partitions assigned: %d (group %s, instance %s)", len(assigned), app.conf.id,
                 app.conf.consumer_group_instance_id or "-")
        health.assigned()

    return app


def to_input_message(event) -> InputMessage:
    m = event.message
    headers = m.headers.items() if hasattr(m.headers, "items") else (m.headers or ())
    return InputMessage(m.topic, m.partition, m.offset, m.key, m.value, tuple(headers), _timestamp_ms(m.timestamp))


NO_TIMESTAMP_MS = -1  # Kafka's "no timestamp"


def _timestamp_ms(seconds: float | None) -> int | None:
    """Faust gives the Kafka timestamp in seconds (ms / 1000.0); Kafka's "no timestamp" is -1 ms.
    Any other negative timestamp is kept: librdkafka produces one and the broker stores it, and read
    as "none" it would turn the skew guard off for that message."""
    if seconds is None:
        return None
    ms = round(seconds * 1000)
    return None if ms == NO_TIMESTAMP_MS else ms


def _raw_topic(app: faust.App, name: str):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def _add_decider(app: faust.App, settings: Settings, decider: Decider, within: float, health: WorkerHealth,
                 guards: _Guards) -> None:
    events_topic = settings.events_topic

    pipeline = decider_pipeline(decider, health)
    settle_s = min(SETTLE_TIMEOUT_S, settings.stop_timeout_s / 3)

    @app.agent(_raw_topic(app, events_topic), name="decider")
    async def decide(stream):
        async for batch in stream.take_events(settings.batch_size, within=within):
            async with guards.batch(events_topic, batch) as messages:
                if messages:
                    await pipeline.submit(messages)

    @app.on_partitions_revoked.connect
    async def drop_revoked(sender, revoked, **kwargs):
        await pipeline.settle(settle_s)
        dropped = decider.drop_partitions({tp.partition for tp in revoked if tp.topic == events_topic})
        log.info("revoked %d partition(s); dropped %d cached member state(s)", len(revoked), dropped)

    @app.on_before_shutdown.connect
    async def publish_the_last_batch(sender, **kwargs):
        # Runs once the streams are empty and before the consumer commits on its way out.
        await pipeline.settle(settle_s)


def decider_pipeline(decider: Decider, health: WorkerHealth | None, backoff: Backoff | None = None) -> PublishPipeline:
    """The decider's steps in a `PublishPipeline`, each retried until done, with the batch's metrics
    recorded once it is published."""

    async def decide_batch(messages: list[InputMessage]) -> DecidedBatch:
        # A batch counts as done (the stage's progress) once it is published, not when decided.
        return await _until_done("decider", decider.decide, messages, health, backoff, progressed=False)

    async def publish(decided: DecidedBatch) -> None:
        report = await _until_done("decider", decider.publish, decided, health, backoff)
        record_decider_batch(report, time.perf_counter() - decided.started)

    return PublishPipeline(decide_batch, publish)


def _add_clock_projector(app: faust.App, settings: Settings, clocks: ClockProjector, within: float,
                         health: WorkerHealth, guards: _Guards) -> None:
    rejections_topic = settings.rejections_topic

    @app.agent(_raw_topic(app, rejections_topic), name="clocks")
    async def advance_clocks(stream):
        async for batch in stream.take_events(settings.batch_size, within=within):
            async with guards.batch(rejections_topic, batch) as messages:
                if messages:
                    await _until_done("clocks", clocks.process, messages, health)


def _add_projector(app: faust.App, settings: Settings, projector: Projector, within: float,
                   health: WorkerHealth, guards: _Guards) -> None:
    ledger_topic = settings.ledger_topic

    @app.agent(_raw_topic(app, ledger_topic), name="projector")
    async def project(stream):
        async for batch in stream.take_events(settings.batch_size, within=within):
            async with guards.batch(ledger_topic, batch) as messages:
                if messages:
                    started = time.perf_counter()
                    report = await _until_done("projector", projector.process, messages, health)
                    record_projector_batch(report, time.perf_counter() - started)
                    record_publish_to_view(messages, time.time())

    @app.on_partitions_revoked.connect
    async def drop_revoked(sender, revoked, **kwargs):
        projector.drop_partitions({tp.partition for tp in revoked if tp.topic == ledger_topic})

    @app.timer(interval=settings.projector_ack_ttl_s / 4, name="projector-heartbeat")
    async def heartbeat():
        # Keeps this projector live for `ledger replay --drop-old`, and follows a switch while idle.
        try:
            await projector.heartbeat()
        except Exception as exc:  # noqa: BLE001 - the next beat tries again; an expired one only delays a drop
            log.warning("projector heartbeat failed (%s: %s)", type(exc).__name__, exc)


async def _until_done(stage: str, process, messages, health: WorkerHealth | None = None,
                      backoff: Backoff | None = None, *, progressed: bool = True):
    """Process a batch, retrying it with backoff until it succeeds.

    A failure (Cassandra, Redis or Kafka restarting, a timeout) leaves the batch unacknowledged, and
    both services are safe to run again on the same batch: the decider's appends are conditional and
    a stored event is a duplicate, the projector's writes are fenced by seq. Without this, an agent
    that raised would stop for good while the worker process stayed up, consuming nothing.

    The retries never end (every store call has a timeout, so each attempt does), but ``health``
    learns of each attempt: a batch in flight for longer than LEDGER_STALL_TIMEOUT_S makes the
    stage stalled (the gauge, /readyz). Pauses grow to 10 s, each drawn with jitter. ``progressed``:
    whether the batch's end counts as the stage's progress (a decided batch counts once published).
    """
    backoff = backoff or Backoff(first_s=0.5, max_s=10.0)
    token = health.batch_started(stage) if health is not None else None
    done = False
    try:
        while True:
            try:
                result = await process(messages)
                done = True
                return result
            except Exception as exc:  # noqa: BLE001 - every failure is retried; the log says which
                if health is not None:
                    health.batch_failed(stage, exc, token)
                delay = backoff.next_pause()
                log.warning("%s batch of %d failed (%s: %s); retrying in %.1fs",
                            stage, len(messages), type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
    finally:
        if health is not None:
            health.batch_finished(stage, ok=done, token=token, progressed=progressed)


def _seek_to_durable_progress(app: faust.App, durable: dict[str, ProgressStore], guards: _Guards) -> None:
    """Wrap the consumer's seek-to-committed (run by Faust after every assignment) so that each
    assigned partition starts at its topic's durable progress when the committed offset is ahead of
    it or missing, and tell the topic's positions where each partition starts."""
    consumer = app.consumer
    seek_to_committed = consumer.seek_to_committed

    async def seek_to_committed_or_durable():
        committed = dict(await seek_to_committed())
        progress = {topic: await store.load(topic) for topic, store in durable.items()}
        starts: dict[str, dict[int, int]] = {}
        for tp in list(committed):
            if tp.topic not in progress:
                continue
            offset = committed[tp]
            target = progress[tp.topic].get(tp.partition, 0)
            if offset is not None and offset > target:
                log.warning("%s[%d]: committed offset %d is ahead of the durable progress %d; seeking back",
                            tp.topic, tp.partition, offset, target)
            if offset is None or offset > target:
                await consumer.seek_wait({TP(tp.topic, tp.partition): target})
                committed[tp] = target
            starts.setdefault(tp.topic, {})[tp.partition] = committed[tp]
        for topic, partitions in starts.items():
            guards.assigned(topic, partitions)
        return committed

    consumer.seek_to_committed = seek_to_committed_or_durable


class _Guards:
    """The `PartitionPositions` of each topic this worker consumes, the probe they share, and the
    topics with a batch in flight (an idle check leaves those alone). Revoked partitions are
    forgotten here, for every topic at once."""

    def __init__(self, app: faust.App, settings: Settings):
        self._app = app
        self._settings = settings
        self._probe: OffsetProbe | None = None
        self.by_topic: dict[str, PartitionPositions] = {}
        self._in_flight: set[str] = set()

        @app.on_partitions_revoked.connect
        async def forget_revoked(sender, revoked, **kwargs):
            for topic, positions in self.by_topic.items():
                positions.revoked({tp.partition for tp in revoked if tp.topic == topic})

    def add(self, topic: str) -> None:
        self.by_topic[topic] = PartitionPositions(topic, self._first_offset, self._seek,
                                                  idle_after_s=self._settings.partition_idle_s,
                                                  on_seek_back=record_seek_back)

    def assigned(self, topic: str, partitions: dict[int, int]) -> None:
        if topic in self.by_topic:
            self.by_topic[topic].assigned(partitions)

    @contextlib.asynccontextmanager
    async def batch(self, topic: str, events):
        """A batch of Faust events in flight: the messages of it to hand over (all of them for a topic
        without durable progress to start from)."""
        self._in_flight.add(topic)
        try:
            messages = [to_input_message(e) for e in events]
            positions = self.by_topic.get(topic)
            yield messages if positions is None else await positions.admit(messages)
        finally:
            self._in_flight.discard(topic)

    async def _first_offset(self, topic: str, partition: int, offset: int) -> int | None:
        if self._probe is None:
            self._probe = OffsetProbe(kafka_connection(self._settings))
        try:
            return await asyncio.to_thread(self._probe.first_offset_from, topic, partition, offset)
        except ProbeError as exc:
            raise ProbeFailed(str(exc)) from None

    async def _seek(self, topic: str, partition: int, offset: int) -> None:
        await self._app.consumer.seek_wait({TP(topic, partition): offset})

    def delivered(self, topic: str, partition: int) -> int | None:
        """The offset of the partition's last message Faust delivered to a stream (its read offset;
        after an assignment or a seek, the offset it starts from)."""
        return self._app.consumer._read_offset.get(TP(topic, partition))

    def watch_idle_partitions(self) -> None:
        """Every IDLE_CHECK_S, the idle check of each topic with no batch in flight."""

        @self._app.timer(interval=IDLE_CHECK_S, name="partition-positions")
        async def check_idle():
            for topic, positions in self.by_topic.items():
                if topic in self._in_flight:
                    continue
                try:
                    await positions.check_idle(lambda p, t=topic: self.delivered(t, p))
                except Exception as exc:  # noqa: BLE001 - the next tick checks again
                    log.warning("idle check of %s failed (%s: %s)", topic, type(exc).__name__, exc)
