"""The cluster profile's stack manager, without starting anything: which nodes, in which order, on
which addresses, with which configuration."""
from __future__ import annotations

from pathlib import Path

import pytest

from tools.stack import cluster_nodes, manager


def test_the_cluster_profile_has_its_own_folder_and_nodes(tmp_path):
    base = tmp_path / ".stack"
    assert manager.stack_dir_of(base, "local") == base
    cluster_dir = manager.stack_dir_of(base, "cluster")
    assert cluster_dir == tmp_path / ".stack-cluster"
    with pytest.raises(manager.StackError):
        manager.stack_dir_of(base, "nope")
    names = [s.name for s in manager.services(cluster_dir)]
    assert names == [*(f"redis-{p}" for p in range(17000, 17006)), "kafka-1", "kafka-2", "kafka-3",
                     "cassandra-1", "cassandra-2", "cassandra-3"]
    assert [s.name for s in manager.services(base)] == ["redis", "kafka", "cassandra"]
    addresses = {(s.host, s.port) for s in manager.services(cluster_dir)}
    assert len(addresses) == 12 and not addresses & {("127.0.0.1", 6379), ("127.0.0.1", 9092), ("127.0.0.1", 9042)}


def test_kafka_nodes_start_together_and_cassandra_nodes_one_after_another(tmp_path):
    cluster_dir = tmp_path / ".stack-cluster"
    phases = manager._phases(cluster_dir, manager.services(cluster_dir))
    assert [[s.name for s in p] for p in phases] == [
        [f"redis-{p}" for p in range(17000, 17006)], ["kafka-1", "kafka-2", "kafka-3"],
        ["cassandra-1"], ["cassandra-2"], ["cassandra-3"]]


def test_each_cassandra_node_listens_on_its_own_address_with_small_heaps(tmp_path):
    node = cluster_nodes.CassandraNode(tmp_path / ".stack-cluster", 2)
    node.prepare()
    config = node.config_file.read_text()
    assert "listen_address: 127.0.0.4" in config and "rpc_address: 127.0.0.4" in config
    assert '- seeds: "127.0.0.2:7000"' in config and "memtable_heap_space: 128MiB" in config
    options = node._jvm_options()
    assert "-Xmx512m" in options and "-Xmx1G" not in options
    assert "-Dcassandra.jmx.local.port=17399" in options
    assert "-Dcassandra.skip_wait_for_gossip_to_settle=0" in options and "-Dcassandra.ring_delay_ms=0" in options


def test_kafka_nodes_share_one_quorum_and_redis_nodes_are_cluster_enabled(tmp_path):
    stack_dir = tmp_path / ".stack-cluster"
    node = cluster_nodes.KafkaNode(stack_dir, 2)
    (node.data_dir / "meta.properties").parent.mkdir(parents=True)
    (node.data_dir / "meta.properties").write_text("formatted")  # no StorageTool run here
    node.prepare()
    config = node.config_file.read_text()
    assert "node.id=2" in config and "listeners=PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:19193" in config
    assert "controller.quorum.bootstrap.servers=127.0.0.1:19192,127.0.0.1:19193,127.0.0.1:19194" in config
    assert "min.insync.replicas=2" in config and "default.replication.factor=3" in config
    assert node._identity() == cluster_nodes.KafkaNode(stack_dir, 3)._identity()  # one cluster id, every dir id
    redis_node = cluster_nodes.RedisNode(stack_dir, 17004)
    redis_node.prepare()
    assert "port 17004" in redis_node.config_file.read_text()
    assert "cluster-enabled yes" in redis_node.config_file.read_text()


def test_the_client_environment_names_every_node():
    env = cluster_nodes.client_env()
    assert env["LEDGER_ENVIRONMENT"] == "cluster"
    assert env["LEDGER_KAFKA_BOOTSTRAP"].count(",") == 2
    assert env["LEDGER_CASSANDRA_HOSTS"] == "127.0.0.2,127.0.0.3,127.0.0.4"
    assert env["LEDGER_REDIS_URL"].startswith("redis+cluster://") and env["LEDGER_REDIS_URL"].count(",") == 5


def test_cluster_environments_exist_for_topics_and_keyspace():
    from app.adapters.cassandra.migrations import params_for
    from app.adapters.kafka.topic_spec import load_specs
    from app.config import REPO_ROOT

    specs = load_specs(REPO_ROOT / "topics", "cluster")
    assert {(s.replication_factor, s.config["min.insync.replicas"]) for s in specs} == {(3, "2")}
    assert "'datacenter1': 3" in params_for(REPO_ROOT / "deploy" / "cql", "cluster", "ks")["replication"]
    assert Path(REPO_ROOT / "deploy" / "local" / "kafka" / "cluster-server.properties").exists()
