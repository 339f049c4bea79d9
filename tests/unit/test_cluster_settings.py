"""Settings for running on clusters: the Redis Cluster client, the Cassandra consistency levels,
static group membership and the group's timing reach the clients (no service needed)."""
from __future__ import annotations

import asyncio

import pytest

from app.config import Settings


@pytest.mark.parametrize("url, flag, nodes", [
    ("redis://127.0.0.1:6379/0", False, None),
    ("redis://10.0.0.5:7000", True, [("10.0.0.5", 7000)]),
    ("redis+cluster://a:17000,b:17001", False, [("a", 17000), ("b", 17001)]),
    ("redis+cluster://a", False, [("a", 6379)]),
])
def test_a_redis_cluster_is_chosen_by_url_or_flag(url, flag, nodes):
    assert Settings(redis_url=url, redis_cluster=flag).redis_cluster_nodes == nodes


def test_the_cluster_client_is_a_redis_cluster_with_every_seed_node_and_timeouts():
    from redis.asyncio.cluster import RedisCluster

    from app import bootstrap

    client = bootstrap.redis_client(Settings(redis_url="redis+cluster://127.0.0.1:1,127.0.0.1:2"))
    assert isinstance(client, RedisCluster)
    assert sorted(n.port for n in client.nodes_manager.startup_nodes.values()) == [1, 2]
    kwargs = client.connection_kwargs
    assert 0 < kwargs["socket_timeout"] <= bootstrap.REDIS_TIMEOUT_S
    assert 0 < kwargs["socket_connect_timeout"] <= bootstrap.REDIS_TIMEOUT_S


def test_consistency_levels_are_settings():
    from cassandra import ConsistencyLevel

    from app.adapters.cassandra.session import consistency_level

    s = Settings()
    assert consistency_level(s.cassandra_consistency) == ConsistencyLevel.LOCAL_QUORUM
    assert consistency_level(s.cassandra_serial_consistency) == ConsistencyLevel.LOCAL_SERIAL
    assert consistency_level(Settings(cassandra_serial_consistency="SERIAL").cassandra_serial_consistency) \
        == ConsistencyLevel.SERIAL
    with pytest.raises(ValueError):
        Settings(cassandra_consistency="TWO_AND_A_HALF")


def test_static_membership_and_group_timing_reach_faust_and_aiokafka():
    from app.entrypoints.worker.faust_app import new_faust_app

    settings = Settings(consumer_group_instance_id="pod-0", session_timeout_s=45, heartbeat_interval_s=3,
                        rebalance_timeout_s=60)
    app = new_faust_app(settings, "download-ledger-all")
    assert app.conf.consumer_group_instance_id == "pod-0-download-ledger-all"
    assert (app.conf.broker_session_timeout, app.conf.broker_heartbeat_interval,
            app.conf.broker_rebalance_timeout) == (45, 3, 60)

    async def created():  # what the worker runs: aiokafka's consumer, built by Faust's driver
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        return consumer._group_instance_id, consumer._session_timeout_ms
    instance, session_ms = asyncio.run(created())
    assert instance == "pod-0-download-ledger-all"
    assert session_ms == 45_000

    dynamic = new_faust_app(Settings(), "download-ledger-all")
    assert dynamic.conf.consumer_group_instance_id is None


@pytest.mark.parametrize("error", ["ClusterDownError", "TryAgainError", "MasterDownError"])
def test_a_redis_cluster_failing_over_is_a_503_not_a_500(error):
    import redis.exceptions
    from fastapi.testclient import TestClient

    from app.entrypoints.api import create_api

    class FailingOver:
        async def get(self, key):
            raise getattr(redis.exceptions, error)("the slot's master is gone")

        async def aclose(self):
            pass

    settings = Settings(api_tokens="t")
    with TestClient(create_api(settings, redis_client=FailingOver())) as client:
        response = client.get("/v1/members/m-1", headers={"Authorization": "Bearer t"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "redis_unavailable"
