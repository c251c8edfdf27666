"""The ledger itself, on a store it is handed: it must see what the two-tenant scenarios rely on it to see
(an event under the wrong tenant or key, one tenant's copy missing while the other's is there)."""

from __future__ import annotations

from typing import Any

from tests.faults.ledger import reconcile
from tests.faults.traffic import TWO_TENANTS, batch_items, ledger_key
from tests.stored import Entry

ACME, GLOBEX = TWO_TENANTS


class Held:
    """The part of a StoredView the ledger reads."""

    def __init__(self, entries: list[Entry]) -> None:
        self._entries = entries

    def entries(self) -> list[Entry]:
        return list(self._entries)


def written(key: Any, under: Any | None = None) -> list[Entry]:
    """Batch 0 as ``key`` sent it, stored under ``under``'s tenant and name (by default, its own)."""
    home = under or key
    return [
        Entry(home.tenant, item["id"], home.name, item["metadata"])
        for item in batch_items("p", 0, 3, key=key)
    ]


def acknowledged(*keys: Any) -> set[str]:
    return {ledger_key(k.tenant, item["id"]) for k in keys for item in batch_items("p", 0, 3, key=k)}


def test_two_tenants_with_the_same_ids_each_holding_their_own_is_exact() -> None:
    ledger = reconcile(Held(written(ACME) + written(GLOBEX)), acknowledged(ACME, GLOBEX))
    assert ledger.exact
    assert ledger.tenants == {"acme": (3, 3), "globex": (3, 3)}


def test_one_tenants_copy_missing_is_lost_for_that_tenant_only() -> None:
    ledger = reconcile(Held(written(ACME)), acknowledged(ACME, GLOBEX))
    assert ledger.lost == sorted(f"globex/p-000000{n}" for n in range(3))
    assert ledger.tenants == {"acme": (3, 3), "globex": (3, 0)}


def test_an_event_stored_under_the_other_tenant_is_crossed() -> None:
    ledger = reconcile(Held(written(ACME) + written(GLOBEX, under=ACME)), acknowledged(ACME))
    assert not ledger.exact
    assert len(ledger.crossed) == 3
    assert len(ledger.duplicated) == 3  # acme then holds each of its seqs twice


def test_an_event_recorded_with_another_keys_name_is_crossed() -> None:
    entries = [Entry(e.tenant, e.id, "someone-else", e.metadata) for e in written(ACME)]
    ledger = reconcile(Held(entries), acknowledged(ACME))
    assert len(ledger.crossed) == 3 and not ledger.lost
