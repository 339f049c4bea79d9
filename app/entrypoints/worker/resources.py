"""The connections a worker holds for its lifetime, built once from Settings at start-up."""
from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from app.adapters.cassandra import session as cassandra_session
from app.adapters.cassandra.event_store import CassandraEventStore
from app.adapters.cassandra.progress_store import CassandraProgressStore
from app.adapters.kafka.producer import BatchProducer
from app.config import Settings


@dataclass
class Resources:
    settings: Settings
    cluster: object
    session: object
    store: CassandraEventStore
    progress: CassandraProgressStore
    producer: BatchProducer
    redis: aioredis.Redis

    @classmethod
    def open(cls, settings: Settings) -> "Resources":
        cluster, session = cassandra_session.connect(settings)
        return cls(
            settings=settings, cluster=cluster, session=session,
            store=CassandraEventStore(session, settings.cassandra_keyspace),
            progress=CassandraProgressStore(session, settings.cassandra_keyspace),
            producer=BatchProducer(settings.kafka_bootstrap),
            redis=aioredis.Redis.from_url(settings.redis_url),
        )

    def close(self) -> None:
        self.producer.close()
        self.cluster.shutdown()
