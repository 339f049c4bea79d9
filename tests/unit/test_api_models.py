"""The read API answers its three busiest routes with orjson bytes that FastAPI does not validate
(app.entrypoints.api.app.view_response): this holds those payloads to the response models that
/openapi.json documents, over random histories, so the shortcut can never change the contract."""
from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.views import licenses, summary, title_year_count
from app.entrypoints.api.models import MemberLicenses, MemberSummary, TitleDownloads
from tests.support.domain_builders import run
from tests.support.strategies import HOUR, START, streams


def same_as_model(model, payload: dict) -> bool:
    """What the model would have answered (validated, then dumped as JSON) equals the bytes sent."""
    return model.model_validate(payload).model_dump(mode="json") == orjson.loads(orjson.dumps(payload))


@settings(max_examples=150, deadline=None)
@given(streams(), st.integers(0, 24 * 200), st.sampled_from([None, "active", "expired", "released"]))
def test_the_busy_reads_send_exactly_what_their_models_document(events, hours, state_filter):
    _, state = run(events)
    at = START + hours * HOUR
    assert same_as_model(MemberSummary, summary(state, at))
    assert same_as_model(MemberLicenses, {"member_id": "m1", "at": at, "seq": state.seq, "state": state_filter,
                                          "licenses": licenses(state, at, state_filter)})
    assert same_as_model(TitleDownloads, {"member_id": "m1", "title_id": "t1", "year": 2024, "seq": state.seq,
                                          "downloads": title_year_count(state, "t1", 2024)})


def test_a_payload_the_model_would_change_is_caught():
    """The check can fail: an extra key, or a value the model coerces, is not the documented shape."""
    good = {"member_id": "m1", "title_id": "t1", "year": 2024, "seq": 3, "downloads": 1}
    assert same_as_model(TitleDownloads, good)
    assert not same_as_model(TitleDownloads, {**good, "extra": 1})
    assert not same_as_model(TitleDownloads, {**good, "downloads": "1"})
