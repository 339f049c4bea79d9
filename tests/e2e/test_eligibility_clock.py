"""Eligibility uses the decider's time base: the member clock over every decided event.

The member's last decided event is a rejection with a later ``occurred_at`` than any accepted one.
The decider would evaluate a new acquisition at that clock (the earlier license has expired by
then, and the new one too); the view, folded from the ledger's accepted events only, has an older
clock. The API must answer as the decider would."""
from __future__ import annotations

import asyncio
import uuid

import httpx

from app.entrypoints.api import create_api
from tests.support.domain_builders import DAY, T0, acquire, event, plan, renew
from tests.support.helpers import wait_until
from tests.support.pipeline import expected_states


def test_eligibility_counts_the_clock_of_rejected_events(pipeline):
    member = f"clock-{uuid.uuid4().hex[:6]}"
    events = [event(plan(device_limit=1), at=T0, member=member),
              event(acquire("l1", device="d1", expires=T0 + 10 * DAY), at=T0, member=member),
              event(renew("nope", expires=T0 + 90 * DAY), at=T0 + 20 * DAY, member=member)]  # UNKNOWN_LICENSE
    expected, _ = expected_states(events)
    assert expected[member].clock == T0 + 20 * DAY and expected[member].seq == 2
    pipeline.start_worker()
    pipeline.publish(events)
    pipeline.wait_for_views(expected)
    wait_until(lambda: any(r.event.member_id == member for r in pipeline.rejections()), 60,
               message="the rejection to be published")

    question = {"device_id": "d2", "title_id": "t1", "studio_id": "s1", "expires_at": T0 + 15 * DAY,
                "at": T0 + DAY}

    async def ask() -> dict:
        app = create_api(pipeline.settings, namespace_ttl=0)
        token = next(iter(pipeline.settings.api_token_set))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            response = await client.post(f"/v1/members/{member}/eligibility", json=question)
        await app.state.reader.client.aclose()
        assert response.status_code == 200, response.text
        return response.json()

    # As the decider would: at the member clock (T0 + 20 days) the new license is already expired.
    answer = wait_until(lambda: (a := asyncio.run(ask()))["reason"] == "ALREADY_EXPIRED" and a, 60,
                        message="eligibility at the decider's clock (ALREADY_EXPIRED, not DEVICE_LIMIT)")
    assert answer["at"] == T0 + 20 * DAY and not answer["eligible"]
