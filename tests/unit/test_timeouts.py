"""Every network call of a worker, the replay, the API and the commands gives up after a bounded time.

No service is needed: the clients are built against fakes or inspected before they connect.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from app.adapters.cassandra import aio
from app.adapters.cassandra import session as cassandra_session
from app.adapters.kafka import topic_admin
from app.adapters.kafka.connection import KafkaConnection
from app.adapters.kafka.producer import BatchProducer, OutRecord, PublishError, producer_config
from app.config import Settings
from tests.support.blackhole import Blackhole

# --- Cassandra ---------------------------------------------------------------------------------


class _Response:
    has_more_pages = False

    def add_callbacks(self, on_rows, on_error):
        on_rows([])


class _RecordingSession:
    def __init__(self):
        self.calls = []

    def execute_async(self, statement, params=None, **kwargs):
        self.calls.append(kwargs)
        return _Response()


def test_async_statements_keep_the_profiles_request_timeout():
    """cassandra-driver reads an explicit ``timeout=None`` as "wait forever": a statement run without
    a timeout of its own must leave the execution profile's request_timeout in force."""
    session = _RecordingSession()

    async def run():
        await aio.execute(session, "SELECT 1")
        await aio.execute(session, "SELECT 2", timeout=3.0)

    asyncio.run(run())
    assert session.calls[0].get("timeout", "profile") == "profile"
    assert session.calls[1]["timeout"] == 3.0


def test_the_cluster_connects_requests_and_reconnects_within_bounds(monkeypatch):
    built = {}

    class FakeCluster:
        def __init__(self, contact_points, **kwargs):
            built.update(kwargs)

        def connect(self, keyspace=None):
            return "session"

    monkeypatch.setattr(cassandra_session, "Cluster", FakeCluster)
    cassandra_session.connect(Settings())
    assert 0 < built["connect_timeout"] <= 15
    assert 0 < built["control_connection_timeout"] <= 15
    profile = next(iter(built["execution_profiles"].values()))
    assert 0 < profile.request_timeout <= 15
    # The driver's default reconnection policy waits up to 10 minutes between attempts and gives up
    # for good after 64: a worker would never see its Cassandra again after a long outage.
    policy = built["reconnection_policy"]
    assert policy.max_delay <= 60 and policy.max_attempts is None
    delays = [d for _, d in zip(range(20), policy.new_schedule())]
    assert max(delays) <= policy.max_delay * 1.15 and len(set(delays)) > 1  # capped, jittered


# --- Kafka -------------------------------------------------------------------------------------


def test_the_producer_gives_every_record_up_before_a_flush_gives_up_waiting():
    """librdkafka's default message.timeout.ms is 5 minutes: a flush that stops waiting earlier leaves
    records of a failed batch queued, to be delivered behind the retried one."""
    config = producer_config(KafkaConnection("127.0.0.1:1"))
    assert config["message.timeout.ms"] <= 60_000
    assert config["socket.timeout.ms"] <= config["message.timeout.ms"]
    producer = BatchProducer(KafkaConnection("127.0.0.1:1"), log_level=0)
    assert producer.flush_timeout_s > config["message.timeout.ms"] / 1000
    quick = BatchProducer(KafkaConnection("127.0.0.1:1"), **{"message.timeout.ms": 2_000, "log_level": 0})
    assert 2 < quick.flush_timeout_s <= 2 + 15


def test_a_batch_to_a_broker_that_never_answers_fails_within_the_message_timeout():
    with Blackhole() as broker:
        producer = BatchProducer(KafkaConnection(f"127.0.0.1:{broker.port}"), **{"message.timeout.ms": 1_500, "log_level": 0})
        started = time.monotonic()
        with pytest.raises(PublishError):
            producer.produce_all([OutRecord("t", b"k", b"v")])
        assert time.monotonic() - started < 10


def test_the_admin_client_bounds_its_requests():
    config = topic_admin.admin_config(KafkaConnection("127.0.0.1:1"))
    assert config["socket.timeout.ms"] <= topic_admin.TIMEOUT_S * 1000


# --- Redis -------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", [False, True])
def test_redis_clients_have_connect_and_socket_timeouts_and_no_hidden_retries(api):
    from app import bootstrap

    settings = Settings()
    client = bootstrap.api_reader(settings).client if api else bootstrap.redis_client(settings)
    kwargs = client.connection_pool.connection_kwargs
    assert 0 < kwargs["socket_timeout"] <= bootstrap.REDIS_TIMEOUT_S
    assert 0 < kwargs["socket_connect_timeout"] <= bootstrap.REDIS_TIMEOUT_S
    connection = client.connection_pool.make_connection()
    assert connection.retry.get_retries() <= 1  # redis-py's own default would retry 10 times
