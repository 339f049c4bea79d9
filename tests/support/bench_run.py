"""What every bench test checks after a `ledger bench` run: it left no topic, keyspace or view behind."""
from __future__ import annotations

import time

from confluent_kafka.admin import AdminClient

from app.bootstrap import kafka_connection, redis_sync_client
from app.config import Settings


def assert_nothing_left_behind(run_id: str, cassandra, redis_db: int) -> None:
    admin = AdminClient(kafka_connection(Settings()).librdkafka())
    deadline = time.monotonic() + 20  # topic deletion reaches the metadata a moment later
    while (left := [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"bench.{run_id}.")]) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left
    keyspaces = [r.keyspace_name for r in cassandra.execute("SELECT keyspace_name FROM system_schema.keyspaces")]
    assert not [k for k in keyspaces if k.startswith(f"bench_{run_id}")]
    settings = Settings()
    assert redis_sync_client(settings, settings.redis_url_for(redis_db)).dbsize() == 0
