"""Clients can never set what the server owns: the received time, the client address, trace ids, the
database's _id, or the corrected timestamp. Unknown fields are refused, in one activity and in a batch."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from activity_service.interfaces.http.callers import Sender
from activity_service.interfaces.http.schemas.common import field_errors
from activity_service.interfaces.http.schemas.ingest import ActivityIn, parse_item

SERVER_OWNED = [
    "receivedAt",
    "ipAddress",
    "originalTimestamp",
    "traceId",
    "trace_id",
    "traceparent",
    "spanId",
    "_id",
    "tenant",
    "source",
    "fingerprint",
]
SENDER = Sender(tenant="default", source="k", ip_address="10.1.2.3", trace_id=None)


@pytest.mark.parametrize("field", SERVER_OWNED)
def test_a_single_activity_setting_a_server_field_is_refused(field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ActivityIn.model_validate({"userId": "u", "action": "a", field: "forged"})
    [error] = field_errors(refused.value.errors())
    assert (error.field, error.message) == (field, "is not a known field")


@pytest.mark.parametrize("field", SERVER_OWNED)
def test_a_batch_item_setting_a_server_field_is_rejected_on_its_own(field: str) -> None:
    outcome = parse_item({"userId": "u", "action": "a", field: "forged"}, SENDER, 32_768)
    assert isinstance(outcome, list)
    assert [(e.field, e.message) for e in outcome] == [(field, "is not a known field")]


def test_the_documented_id_is_the_only_id_a_client_sets() -> None:
    draft = parse_item({"userId": "u", "action": "a", "id": "client-1"}, SENDER, 32_768)
    assert not isinstance(draft, list)
    assert (draft.id, draft.ip_address, draft.tenant, draft.source) == (
        "client-1",
        "10.1.2.3",
        "default",
        "k",
    )
