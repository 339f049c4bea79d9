"""The cluster profile's nodes: 3 Kafka (KRaft combined mode, a 3-voter quorum), 3 Cassandra (one
datacenter, one loopback address each) and 6 Redis (a Redis Cluster of 3 masters + 3 replicas), all
on this machine beside the single-node stack, on addresses and ports of their own.

Every node is a LocalService of its own (its process, log, data folder and health check), so
`ledger stack kill kafka-2 --profile cluster` crashes one broker as a fault test needs."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from tools.stack.cassandra_server import CassandraServer
from tools.stack.kafka_server import KafkaServer
from tools.stack.maven import InstallError
from tools.stack.redis_server import RedisServer
from tools.stack.service import DEPLOY_LOCAL

KAFKA_NODES = 3
KAFKA_PORT, KAFKA_CONTROLLER_PORT = 19091, 19191  # + node id (1..3)
CASSANDRA_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
CASSANDRA_JMX_PORT = 17199  # + 100 per node; local JMX binds 127.0.0.1 whatever the node's address
REDIS_PORTS = tuple(range(17000, 17006))


def _uuid_b64() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class KafkaNode(KafkaServer):
    """Kafka node ``node_id`` of 3: broker and controller; the quorum needs 2 of the 3 up."""

    def __init__(self, stack_dir: Path, node_id: int):
        self.name = f"kafka-{node_id}"
        self.node_id = node_id
        self.port = KAFKA_PORT + node_id
        self.controller_port = KAFKA_CONTROLLER_PORT + node_id
        super().__init__(stack_dir)

    @property
    def lib_dir(self):
        return self.stack_dir / "lib" / "kafka"

    @property
    def config_file(self):
        return self.stack_dir / "conf" / self.name / "server.properties"

    def _identity(self) -> dict:
        """The cluster id and every node's metadata directory id, made once and shared by all
        three nodes: each is formatted with the same ``--initial-controllers``."""
        path = self.stack_dir / "data" / "kafka-identity.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"cluster_id": _uuid_b64(),
                                        "directories": {str(i): _uuid_b64() for i in range(1, KAFKA_NODES + 1)}}))
        return json.loads(path.read_text())

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        quorum = ",".join(f"127.0.0.1:{KAFKA_CONTROLLER_PORT + i}" for i in range(1, KAFKA_NODES + 1))
        text = (DEPLOY_LOCAL / "kafka" / "cluster-server.properties").read_text()
        for key, value in {"node_id": self.node_id, "port": self.port, "controller_port": self.controller_port,
                           "quorum": quorum, "data_dir": self.data_dir}.items():
            text = text.replace("{" + key + "}", str(value))
        self.config_file.write_text(text)
        if (self.data_dir / "meta.properties").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identity = self._identity()
        controllers = ",".join(f"{i}@127.0.0.1:{KAFKA_CONTROLLER_PORT + i}:{identity['directories'][str(i)]}"
                               for i in range(1, KAFKA_NODES + 1))
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", f"--cluster-id={identity['cluster_id']}",
                       "-c", str(self.config_file), f"--initial-controllers={controllers}"),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise InstallError(f"{self.name} storage format failed:\n{result.stdout}{result.stderr}")

    def check(self) -> str:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": f"{self.host}:{self.port}", "socket.timeout.ms": 2000})
        metadata = admin.list_topics(timeout=3)
        if self.node_id not in metadata.brokers:
            raise RuntimeError(f"broker {self.node_id} is not in the cluster's metadata yet")
        leaders = sum(1 for t in metadata.topics.values() for p in t.partitions.values() if p.leader == self.node_id)
        return f"broker {self.node_id}: {len(metadata.brokers)} broker(s) up, leads {leaders} partition(s)"


class CassandraNode(CassandraServer):
    """Cassandra node on 127.0.0.{2,3,4}:9042; the first is the seed. Heap 512 MiB, memtables 128 MiB."""

    def __init__(self, stack_dir: Path, index: int):
        self.name = f"cassandra-{index + 1}"
        self.index = index
        self.host = CASSANDRA_ADDRESSES[index]
        super().__init__(stack_dir)

    @property
    def lib_dir(self):
        return self.stack_dir / "lib" / "cassandra"

    @property
    def config_file(self):
        return self.stack_dir / "conf" / self.name / "cassandra.yaml"

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = (DEPLOY_LOCAL / "cassandra" / "cassandra.yaml").read_text().replace("{dir}", str(self.data_dir))
        for old, new in {
            "cluster_name: download-ledger-local": "cluster_name: download-ledger-cluster",
            "listen_address: 127.0.0.1": f"listen_address: {self.host}",
            "rpc_address: 127.0.0.1": f"rpc_address: {self.host}",
            '- seeds: "127.0.0.1:7000"': f'- seeds: "{CASSANDRA_ADDRESSES[0]}:7000"',
            "memtable_heap_space: 256MiB": "memtable_heap_space: 128MiB",
            "memtable_offheap_space: 256MiB": "memtable_offheap_space: 128MiB",
        }.items():
            if old not in text:
                raise InstallError(f"deploy/local/cassandra/cassandra.yaml has no line {old!r} to adapt for {self.name}")
            text = text.replace(old, new)
        self.config_file.write_text(text)

    def _jvm_options(self) -> list[str]:
        keep = [a for a in super()._jvm_options()
                if not a.startswith(("-Xms", "-Xmx", "-Dcassandra.jmx.local.port"))]
        return [*keep, "-Xms512m", "-Xmx512m", f"-Dcassandra.jmx.local.port={CASSANDRA_JMX_PORT + 100 * self.index}"]

    def check(self) -> str:
        from cassandra.cluster import Cluster
        from cassandra.policies import WhiteListRoundRobinPolicy

        cluster = Cluster([self.host], port=self.port, connect_timeout=2, control_connection_timeout=2,
                          load_balancing_policy=WhiteListRoundRobinPolicy([self.host]))
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version FROM system.local", timeout=3).one()
            peers = list(session.execute("SELECT peer FROM system.peers_v2", timeout=3))
            return f"Cassandra {row.release_version} on {self.host}, {len(peers)} peer(s) known"
        finally:
            cluster.shutdown()


class RedisNode(RedisServer):
    """One node of the Redis Cluster (a master or a replica: `redis-cli --cluster create` decides)."""

    def __init__(self, stack_dir: Path, port: int):
        self.name = f"redis-{port}"
        self.port = port
        super().__init__(stack_dir)

    @property
    def config_file(self):
        return self.stack_dir / "conf" / self.name / "redis.conf"

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        template = (DEPLOY_LOCAL / "redis" / "redis-cluster.conf").read_text()
        self.config_file.write_text(template.replace("{dir}", str(self.data_dir)).replace("{port}", str(self.port)))

    def check(self) -> str:
        info = cluster_info(self.host, self.port)
        role = info["role"] if info["role"] == "master" else f"replica of {info['master']}"
        return f"Redis {info['version']} {role}, slots {info['slots']}, cluster_state:{info['state']}"


def cluster_info(host: str, port: int) -> dict:
    import redis

    client = redis.Redis(host=host, port=port, socket_timeout=2, socket_connect_timeout=2)
    try:
        server, replication = client.info("server"), client.info("replication")
        raw = client.execute_command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else raw
        if isinstance(raw, dict):
            fields = {str(k): str(v) for k, v in raw.items()}
        else:
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        myself = client.execute_command("CLUSTER", "MYID")
        slots = 0
        for line in _text(client.execute_command("CLUSTER", "NODES")).splitlines():
            parts = line.split()
            if parts and parts[0] == _text(myself):
                for r in parts[8:]:
                    lo, _, hi = r.partition("-")
                    if lo.isdigit():
                        slots += int(hi or lo) - int(lo) + 1
        master = f"{replication.get('master_host')}:{replication.get('master_port')}"
        return {"version": server["redis_version"], "role": replication["role"], "master": master,
                "state": fields.get("cluster_state", "?").strip(),
                "assigned": int(fields.get("cluster_slots_assigned", "0")), "slots": slots}
    finally:
        client.close()


def _text(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def form_redis_cluster(nodes: list[RedisNode], echo=print, timeout: float = 60.0) -> float:
    """``redis-cli --cluster create`` once (3 masters, a replica each), then until every node says
    cluster_state:ok; returns the seconds that took. A cluster already formed (nodes.conf in each
    data folder) is only waited for."""
    started = time.monotonic()
    if cluster_info(nodes[0].host, nodes[0].port)["assigned"] == 0:
        cli = shutil.which("redis-cli") or "redis-cli"
        result = subprocess.run(
            [cli, "--cluster", "create", *(f"{n.host}:{n.port}" for n in nodes), "--cluster-replicas", "1",
             "--cluster-yes"], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise InstallError(f"redis-cli --cluster create failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        echo("redis     cluster created: 3 masters, 3 replicas")
    deadline = started + timeout
    while True:
        states = [cluster_info(n.host, n.port)["state"] for n in nodes]
        if all(s == "ok" for s in states):
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise InstallError(f"the Redis Cluster did not reach cluster_state:ok within {timeout:.0f}s: {states}")
        time.sleep(0.25)


def cluster_nodes(stack_dir: Path) -> tuple[list[RedisNode], list[KafkaNode], list[CassandraNode]]:
    return ([RedisNode(stack_dir, p) for p in REDIS_PORTS],
            [KafkaNode(stack_dir, i) for i in range(1, KAFKA_NODES + 1)],
            [CassandraNode(stack_dir, i) for i in range(len(CASSANDRA_ADDRESSES))])


def client_env() -> dict[str, str]:
    """What the workers, the API, the commands and the tests set to use the cluster profile."""
    return {
        "LEDGER_ENVIRONMENT": "cluster",
        "LEDGER_KAFKA_BOOTSTRAP": ",".join(f"127.0.0.1:{KAFKA_PORT + i}" for i in range(1, KAFKA_NODES + 1)),
        "LEDGER_CASSANDRA_HOSTS": ",".join(CASSANDRA_ADDRESSES),
        "LEDGER_REDIS_URL": "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in REDIS_PORTS),
    }
