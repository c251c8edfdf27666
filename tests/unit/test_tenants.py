"""Tenants and resends over fakes: ids are the tenant's, and a resend with other content is refused."""

from __future__ import annotations

import pytest

from activity_service.application.record_activity import ActivityDraft, RecordActivity
from activity_service.application.record_batch import RecordBatch
from activity_service.application.resends import ConflictingResend, RecentContent
from activity_service.domain.addresses import AddressMode, kept_address
from tests.fakes import FixedClock, InMemoryPublisher, SequentialIds


def draft(tenant: str = "acme", action: str = "view", event_id: str | None = "order-123") -> ActivityDraft:
    return ActivityDraft(user_id="u", action=action, id=event_id, tenant=tenant, source="k")


async def test_a_resend_with_other_content_is_refused_and_with_the_same_content_accepted() -> None:
    publisher = InMemoryPublisher()
    record = RecordActivity(publisher, FixedClock(), SequentialIds())
    first = await record.execute(draft())
    assert (await record.execute(draft())).fingerprint == first.fingerprint  # the same event again
    with pytest.raises(ConflictingResend):
        await record.execute(draft(action="refund"))
    await record.execute(draft(tenant="globex", action="refund"))  # another tenant's id: its own
    assert [(a.tenant, a.action) for a in publisher.published] == [("acme", "view")] * 2 + [
        ("globex", "refund")
    ]


async def test_a_batch_rejects_the_conflicting_item_alone() -> None:
    publisher, recent = InMemoryPublisher(), RecentContent()
    clock, ids = FixedClock(), SequentialIds()
    await RecordActivity(publisher, clock, ids, recent).execute(draft())
    batch = RecordBatch(publisher, clock, ids, max_items=10, recent=recent)
    result = await batch.execute([draft(action="refund"), draft(event_id="other")])
    assert [r.errors[0].field if r.errors else None for r in result.items] == ["id", None]


async def test_server_assigned_ids_carry_no_fingerprint() -> None:
    record = RecordActivity(InMemoryPublisher(), FixedClock(), SequentialIds())
    assert (await record.execute(draft(event_id=None))).fingerprint is None


@pytest.mark.parametrize(
    ("address", "mode", "kept"),
    [
        ("203.0.113.77", AddressMode.TRUNCATED, "203.0.113.0"),
        ("2001:db8:abcd:12:1:2:3:4", AddressMode.TRUNCATED, "2001:db8:abcd::"),
        ("::ffff:198.51.100.9", AddressMode.TRUNCATED, "198.51.100.0"),
        ("not-an-address", AddressMode.TRUNCATED, None),
        ("203.0.113.77", AddressMode.NONE, None),
        ("203.0.113.77", AddressMode.FULL, "203.0.113.77"),
        (None, AddressMode.FULL, None),
    ],
)
def test_ip_address_mode_keeps_as_much_of_the_address_as_asked(
    address: str | None, mode: AddressMode, kept: str | None
) -> None:
    assert kept_address(address, mode) == kept
