"""A cassandra-driver session configured from Settings."""
from __future__ import annotations

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra import ConsistencyLevel


def connect(settings, keyspace: str | None = None):
    """Returns (cluster, session); LOCAL_QUORUM reads and writes, SERIAL for conditions."""
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
        request_timeout=15,
    )
    cluster = Cluster(
        settings.cassandra_contact_points, port=settings.cassandra_port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile}, protocol_version=5,
    )
    session = cluster.connect(keyspace)
    return cluster, session
