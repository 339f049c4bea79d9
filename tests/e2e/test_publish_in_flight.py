"""The decider acknowledges a batch once its decisions are stored and publishes it in the background
(`PublishPipeline`), so its group's committed offsets may pass its durable progress. Here, on the secure
profile, the decider's principal is denied writes to the ledger for a while: its publish retries while
Faust commits. The decider is killed once its committed offsets ran ahead, and a new one, once the
ledger takes its writes again, starts from the durable progress: every outcome is published."""
from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AclBinding, AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType
from confluent_kafka.admin import ResourceType as KafkaResource

from app.adapters.kafka.lag import ConsumerLag
from app.bootstrap import group_id, kafka_connection
from tests.support.helpers import wait_until
from tests.support.pipeline import assert_exact_outputs, expected_states
from tests.support.random_history import random_history
from tools.stack import manager, secure_profile

pytestmark = pytest.mark.stack


def _deny_ledger_writes(pipeline) -> AclBinding:
    return AclBinding(KafkaResource.TOPIC, pipeline.settings.ledger_topic, ResourcePatternType.LITERAL, "User:decider",
                      "*", AclOperation.WRITE, AclPermissionType.DENY)


def _ahead(pipeline) -> tuple[int, int] | None:
    """(committed offsets, durable progress) of the decider on the input topic, summed over partitions,
    when the committed offsets are ahead."""
    topic = pipeline.settings.events_topic
    lag = ConsumerLag(kafka_connection(pipeline.settings))
    try:
        committed = sum(o for (t, _), o in lag.committed(group_id(pipeline.settings, "decider")).items() if t == topic)
    finally:
        lag.close()
    progress = sum(r.next_offset for r in pipeline.cassandra.execute(
        f"SELECT next_offset FROM {pipeline.settings.cassandra_keyspace}.decider_progress WHERE topic = %s", (topic,)))
    return (committed, progress) if committed > progress else None


def test_a_decider_killed_with_its_publish_held_back_after_its_offsets_were_committed_loses_nothing(pipeline):
    stack_dir = pipeline.settings.stack_dir
    if manager.profile_of(stack_dir) != "secure":
        pytest.skip("runs on the secure profile, as `make test` does: it denies the decider's principal a write")
    manager.provision(stack_dir, settings=pipeline.settings, echo=lambda *_: None)
    as_decider = secure_profile.login_env(stack_dir, "decider")
    decider = pipeline.start_worker(role="decider", **as_decider)
    pipeline.start_worker(role="projector", **secure_profile.login_env(stack_dir, "projector"))
    events = random_history(uuid.uuid4().hex[:6], members=20, events=400, seed=17)
    pipeline.publish(events[:100])
    pipeline.wait_for_views(expected_states(events[:100])[0])

    deny = _deny_ledger_writes(pipeline)
    pipeline.admin.create_acls([deny])[deny].result(30)
    try:
        pipeline.publish(events[100:])
        committed, progress = wait_until(lambda: _ahead(pipeline), 90, interval=0.5,
                                         message="the decider's committed offsets ahead of its durable progress")
        assert progress < committed <= len(events) and decider.alive
        decider.kill()
    finally:
        denied = AclBindingFilter(deny.restype, deny.name, deny.resource_pattern_type, deny.principal, deny.host,
                                  deny.operation, deny.permission_type)
        pipeline.admin.delete_acls([denied])[denied].result(30)

    pipeline.start_worker(role="decider", **as_decider)
    assert_exact_outputs(pipeline, events)
