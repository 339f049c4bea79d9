"""The pipeline under least privilege, on the secure profile: the decider and the projector each log in
as their own principal, events are published as `tools`, and the read API's reader logs in as `api`.
Each principal holds only the rights deploy/security/ gives it (rendered for this test's topics, group
and keyspace, applied as admin, as `ledger stack provision` does), and the outputs are exact."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from app import bootstrap
from app.config import Settings
from app.domain.views import digest
from tests.support.pipeline import assert_exact_outputs, expected_states
from tests.support.random_history import random_history
from tools.stack import manager, secure_profile

pytestmark = pytest.mark.stack


def role_settings(pipeline, principal: str) -> Settings:
    """The pipeline's settings as ``principal`` logs in: `ledger stack env --principal` less the Redis
    URL (the test's pipeline names its own database)."""
    env = secure_profile.login_env(pipeline.settings.stack_dir, principal)
    values = {k.removeprefix("LEDGER_").lower(): v for k, v in env.items()}
    role = Settings(**values)  # reads the role's password files
    secrets = {"kafka_sasl_password", "cassandra_password", "redis_password"}
    return pipeline.settings.model_copy(update={k: getattr(role, k) for k in {*values, *secrets}})


def test_each_role_runs_as_its_own_principal_and_the_outputs_are_exact(pipeline):
    stack_dir = pipeline.settings.stack_dir
    if manager.profile_of(stack_dir) != "secure":
        pytest.skip("runs on the secure profile, as `make test` does")
    manager.provision(stack_dir, settings=pipeline.settings, echo=lambda *_: None)
    deciders = pipeline.start_worker(role="decider", **secure_profile.login_env(stack_dir, "decider"))
    projectors = pipeline.start_worker(role="projector", **secure_profile.login_env(stack_dir, "projector"))

    events = random_history(uuid.uuid4().hex[:6], members=30, events=600, seed=21)
    publisher = bootstrap.event_publisher(role_settings(pipeline, "tools"), pipeline.settings.events_topic)
    try:
        publisher.publish(events)
    finally:
        publisher.close()
    assert_exact_outputs(pipeline, events)
    assert deciders.alive and projectors.alive

    api = role_settings(pipeline, "api")
    assert api.redis_username == "api" and api.cassandra_username == "api"
    states, _ = expected_states(events)

    async def read_as_api():
        reader = bootstrap.api_reader(api)
        try:
            return {m: await reader.member(m) for m in states}
        finally:
            await reader.client.aclose()

    seen = asyncio.run(read_as_api())
    assert {m: digest(s) for m, s in seen.items()} == {m: digest(s) for m, s in states.items()}
