"""The store contract: every store port, the same tests for every store (tests/integration/stores.py opens
each on the real database: FerretDB here, MongoDB under testcontainers; PostgreSQL)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activity_service.domain.activity import DEFAULT_TENANT, Activity
from activity_service.domain.delivery import DeadLetter, PartitionProgress
from activity_service.domain.erasure import Erasure, ErasureStatus
from activity_service.domain.query import ActivityQuery, Position
from activity_service.domain.stats import CountQuery, Interval
from activity_service.infrastructure.store import Store

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def make(
    n: int, *, user: str = "u1", action: str = "view", minutes: int | None = None, **extra: Any
) -> Activity:
    at = BASE + timedelta(minutes=n if minutes is None else minutes)
    return Activity.record(id=f"e{n:04d}", user_id=user, action=action, received_at=at, timestamp=at, **extra)


def vars_of(activity: Activity) -> dict[str, Any]:
    return {name: getattr(activity, name) for name in activity.__dataclass_fields__}


async def test_storing_is_idempotent_by_event_id(store: Store) -> None:
    first = await store.activities.add_many([make(1), make(2)])
    again = await store.activities.add_many([make(2), make(3), make(1)])
    assert (first.inserted, first.duplicates) == (2, 0)
    assert (again.inserted, again.duplicates, dict(again.rejected)) == (1, 2, {})
    assert (await store.activities.find(ActivityQuery(limit=100))).total == 3


async def test_a_batch_that_repeats_an_id_stores_it_once(store: Store) -> None:
    outcome = await store.activities.add_many([make(1), make(1), make(2)])
    assert (outcome.inserted, outcome.duplicates) == (2, 1)


async def test_an_activity_reads_back_equal_with_every_field(store: Store) -> None:
    activity = make(
        7,
        metadata={
            "path": "/x",
            "n": 3,
            "nested": {"list": [1, "two", {"k": None}]},
            "f": 0.5,
            "big": 2**62,
            "u": "é✓",
        },
        ip_address="198.51.100.4",
        sent_at=BASE + timedelta(minutes=8),
        trace_id="0af7651916cd43dd8448eb211c80319c",
    )
    await store.activities.add_many([activity])
    assert await store.activities.get(DEFAULT_TENANT, activity.id) == activity
    assert await store.activities.get(DEFAULT_TENANT, "missing") is None


async def test_times_keep_milliseconds_exactly(store: Store) -> None:
    at = datetime(2026, 3, 1, 12, 30, 45, 123000, tzinfo=UTC)
    activity = Activity.record(
        id="ms", user_id="u", action="a", received_at=at, timestamp=at - timedelta(milliseconds=1)
    )
    await store.activities.add_many([activity])
    stored = await store.activities.get(DEFAULT_TENANT, "ms")
    assert stored is not None and (stored.timestamp, stored.received_at) == (activity.timestamp, at)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"matrix": [[1, 2], [3, 4]]}, id="nested-arrays"),  # FerretDB refuses, others store
        pytest.param({"blob": "x" * (17 * 1024 * 1024)}, id="over-16MiB"),  # MongoDB refuses, others store
        pytest.param({"text": "a\u0000b"}, id="nul-in-a-string"),  # PostgreSQL's jsonb refuses, others store
        pytest.param({"n": 2**64}, id="integer-over-64-bits"),  # neither JSON (orjson) nor BSON holds it
        pytest.param({"text": "a\ud800b"}, id="lone-surrogate"),  # not UTF-8: no store can hold it
    ],
)
async def test_every_activity_gets_a_verdict_even_a_shape_some_stores_refuse(
    store: Store, metadata: dict[str, Any]
) -> None:
    # Built as a store reads one back (no input rule): the API no longer accepts NUL in strings, but an
    # event accepted before that rule may still be on the topic, and the store must still give a verdict.
    odd = Activity.restore(**{**vars_of(make(2)), "metadata": metadata})
    outcome = await store.activities.add_many([make(1), odd, make(3)])
    assert outcome.inserted + outcome.duplicates + len(outcome.rejected) == 3
    assert set(outcome.rejected) <= {odd.key}
    assert (await store.activities.get(*odd.key) is None) == (odd.key in outcome.rejected)
    assert await store.activities.get(DEFAULT_TENANT, "e0001") is not None
    assert await store.activities.get(DEFAULT_TENANT, "e0003") is not None


async def test_find_filters_sorts_and_pages(store: Store) -> None:
    activities = [make(i, user=f"u{i % 3}", action="buy" if i % 2 else "view") for i in range(30)]
    activities.append(make(100, user="u0", action="view", minutes=29))  # a tie on time: the id decides
    await store.activities.add_many(activities)
    find = store.activities.find

    everything = await find(ActivityQuery(limit=100))
    assert [a.id for a in everything.items][:3] == ["e0100", "e0029", "e0028"]
    assert everything.total == 31

    page = await find(ActivityQuery(user_id="u1", page=2, limit=4))
    expected = sorted((a for a in activities if a.user_id == "u1"), key=lambda a: a.timestamp, reverse=True)
    assert [a.id for a in page.items] == [a.id for a in expected[4:8]]
    assert (page.total, page.total_pages, page.has_more) == (10, 3, True)

    buys = await find(ActivityQuery(actions=("buy",), limit=100))
    assert buys.total == 15 and all(a.action == "buy" for a in buys.items)
    assert (await find(ActivityQuery(actions=("buy", "view"), limit=100))).total == 31

    window = await find(
        ActivityQuery(start=BASE + timedelta(minutes=10), end=BASE + timedelta(minutes=12), limit=100)
    )
    assert sorted(a.id for a in window.items) == ["e0010", "e0011", "e0012"]  # both bounds inclusive

    combined = await find(
        ActivityQuery(user_id="u2", actions=("view",), start=BASE + timedelta(minutes=5), limit=100)
    )
    assert sorted(a.id for a in combined.items) == ["e0008", "e0014", "e0020", "e0026"]
    uncounted = await find(ActivityQuery(limit=5, count_total=False))
    assert uncounted.total is None and len(uncounted.items) == 5 and uncounted.has_more


async def test_a_keyset_walk_over_ties_and_filters_matches_the_full_order(store: Store) -> None:
    activities = [make(i, user=f"u{i % 2}", minutes=i // 4) for i in range(41)]  # 4 events per timestamp
    await store.activities.add_many(activities)
    for query in (
        ActivityQuery(limit=5, count_total=False),
        ActivityQuery(user_id="u1", limit=3, count_total=False),
        ActivityQuery(
            start=BASE + timedelta(minutes=2), end=BASE + timedelta(minutes=7), limit=4, count_total=False
        ),
    ):
        expected = sorted(
            (
                a
                for a in activities
                if query.user_id in (None, a.user_id)
                and (query.start is None or a.timestamp >= query.start)
                and (query.end is None or a.timestamp <= query.end)
            ),
            key=lambda a: (a.timestamp, a.id),
            reverse=True,
        )
        seen: list[str] = []
        position: Position | None = None
        while True:
            page = await store.activities.find(replace(query, after=position))
            assert page.total is None
            seen += [a.id for a in page.items]
            position = page.next_position
            if position is None:
                break
        assert seen == [a.id for a in expected]


async def test_filter_values_are_matched_as_literals_never_as_operators(store: Store) -> None:
    await store.activities.add_many([make(i, user=f"u{i % 2}") for i in range(6)])
    for literal in (
        '{"$gt": ""}',
        "{'$ne': null}",
        "u1' OR '1'='1",
        "u1'; DROP TABLE activities; --",
        "$where",
        "u.*",
        "%",
    ):
        for query in (ActivityQuery(user_id=literal), ActivityQuery(actions=(literal,))):
            page = await store.activities.find(query)
            assert (page.total, list(page.items)) == (0, []), literal
    assert (await store.activities.find(ActivityQuery(user_id="u1"))).total == 3


async def test_a_read_for_a_value_holding_nul_finds_nothing(store: Store) -> None:
    """No event holds U+0000 in its id, user or action (ingest refuses it; PostgreSQL cannot store it in
    text): every read of one answers "nothing", never an error."""
    await store.activities.add_many([make(1)])
    nul = "u1\u0000"
    assert await store.activities.get(DEFAULT_TENANT, "e0001\u0000") is None
    for query in (ActivityQuery(user_id=nul), ActivityQuery(actions=(nul,))):
        page = await store.activities.find(query)
        assert (page.total, list(page.items)) == (0, []), query
    day = CountQuery(Interval.DAY, BASE, BASE, user_id=nul)
    assert await store.counts.count(day) == []
    assert await store.counts.count(replace(day, user_id=None, actions=(nul,))) == []
    assert await store.dead_letters.error_types(DEFAULT_TENANT, "e\u0000") == set()
    assert await store.erasures.get(DEFAULT_TENANT, "er\u0000") is None


async def test_purge_removes_only_events_of_the_days_before_the_cutoff(store: Store) -> None:
    await store.activities.add_many([make(i, minutes=i * 360) for i in range(10)])  # four a day
    cutoff = BASE + timedelta(days=1)  # the start of a UTC day, as retention passes it
    assert await store.activities.purge_before(cutoff) == 4
    assert await store.activities.purge_before(cutoff) == 0
    remaining = await store.activities.find(ActivityQuery(limit=100))
    assert sorted(a.id for a in remaining.items) == [f"e{i:04d}" for i in range(4, 10)]


async def test_the_store_answers_its_ping(store: Store) -> None:
    await store.ping()


async def test_progress_never_moves_back(store: Store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ahead = PartitionProgress("t", 0, 50, now, True, now)
    await store.progress.record([ahead, PartitionProgress("t", 1, 5, None, False, now)])
    await store.progress.record(
        [PartitionProgress("t", 0, 40, now - timedelta(hours=1), False, now + timedelta(seconds=1))]
    )
    by_partition = {p.partition: p for p in await store.progress.read("t")}
    assert by_partition[0] == ahead
    assert by_partition[1].last_received_at is None
    forward = PartitionProgress("t", 1, 9, None, True, now + timedelta(seconds=2))
    await store.progress.record([forward])
    assert {p.partition: p for p in await store.progress.read("t")}[1] == forward
    assert await store.progress.read("other") == []


async def test_a_known_receipt_time_is_kept_when_a_later_record_does_not_know_it(store: Store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await store.progress.record([PartitionProgress("t", 0, 10, now - timedelta(minutes=1), False, now)])
    await store.progress.record([PartitionProgress("t", 0, 12, None, True, now + timedelta(seconds=1))])
    [kept] = await store.progress.read("t")
    assert (kept.next_offset, kept.last_received_at, kept.caught_up) == (12, now - timedelta(minutes=1), True)


async def test_dead_letter_records_are_idempotent_and_can_be_forgotten(store: Store) -> None:
    letter = DeadLetter(
        "t:0:7", "evt-7", "InvalidActivity", "userId: empty", datetime.now(UTC), DEFAULT_TENANT, "u7"
    )
    await store.dead_letters.add(letter)
    await store.dead_letters.add(letter)
    await store.dead_letters.add(
        DeadLetter("t:0:8", None, "UndecodableMessage", "not JSON", datetime.now(UTC))
    )
    assert await store.dead_letters.error_types(DEFAULT_TENANT, "evt-7") == {"InvalidActivity"}
    assert await store.dead_letters.error_types(DEFAULT_TENANT, "evt-8") == set()
    await store.dead_letters.forget([(DEFAULT_TENANT, "evt-7"), (DEFAULT_TENANT, "never-there")])
    assert await store.dead_letters.error_types(DEFAULT_TENANT, "evt-7") == set()
    await store.dead_letters.forget([])


async def test_retention_is_applied_by_the_database_or_left_to_the_consumer(store: Store) -> None:
    itself = await store.apply_retention(7)
    assert isinstance(itself, bool)
    assert await store.apply_retention(0) is True, "keeping everything needs no purge"


def chosen(n: int, *, tenant: str = DEFAULT_TENANT, action: str = "view", user: str = "u1") -> Activity:
    """An event whose id the client chose: its content is fingerprinted."""
    at = BASE + timedelta(minutes=n)
    return Activity.record(
        id=f"c{n:04d}",
        user_id=user,
        action=action,
        received_at=at,
        timestamp=at,
        tenant=tenant,
        chosen_id=True,
    )


async def counted(store: Store, tenant: str, **filters: Any) -> int:
    """The tenant's events in the counts over time (a wide range of hours around BASE)."""
    query = CountQuery(
        Interval.HOUR, BASE - timedelta(days=2), BASE + timedelta(days=30), tenant=tenant, **filters
    )
    return sum(b.total for b in await store.counts.count(query))


async def test_two_tenants_keep_their_own_event_of_one_id(store: Store) -> None:
    ours = [make(i, tenant="acme", action="buy") for i in range(6)]
    theirs = [make(i, tenant="globex") for i in range(4)]  # same ids, same user
    outcome = await store.activities.add_many([*ours, *theirs])
    assert (outcome.inserted, outcome.duplicates, list(outcome.conflicts)) == (10, 0, [])

    for tenant, expected in (("acme", ours), ("globex", theirs)):
        page = await store.activities.find(ActivityQuery(tenant=tenant, user_id="u1", limit=100))
        assert page.total == len(expected) and {a.tenant for a in page.items} == {tenant}
        assert await store.activities.get(tenant, "e0001") == expected[1]
        assert await counted(store, tenant) == len(expected)
        assert await counted(store, tenant, user_id="u1") == len(expected)
        # A keyset walk stays in its tenant, whatever the other holds at the same positions.
        seen: list[str] = []
        query = ActivityQuery(tenant=tenant, limit=2, count_total=False)
        position: Position | None = None
        while True:
            walked = await store.activities.find(replace(query, after=position))
            assert {a.tenant for a in walked.items} <= {tenant}
            seen += [a.id for a in walked.items]
            if (position := walked.next_position) is None:
                break
        assert seen == [a.id for a in reversed(expected)]
    assert (await store.activities.find(ActivityQuery(limit=100))).total == 0  # the default tenant has none
    assert await store.activities.get(DEFAULT_TENANT, "e0001") is None
    assert await counted(store, DEFAULT_TENANT) == 0


async def test_a_resend_with_other_content_is_a_conflict_and_changes_nothing(store: Store) -> None:
    first = chosen(1)
    assert (await store.activities.add_many([first])).inserted == 1

    same = await store.activities.add_many([chosen(1)])
    assert (same.inserted, same.duplicates, list(same.conflicts)) == (0, 1, [])

    other = chosen(1, action="refund")  # same tenant and id, other content
    resent = await store.activities.add_many([other, chosen(2)])
    assert (resent.inserted, resent.duplicates, dict(resent.rejected)) == (1, 1, {})
    assert list(resent.conflicts) == [first.key]
    assert await store.activities.get(*first.key) == first  # the first content stays
    assert (
        await counted(store, DEFAULT_TENANT) == 2
        and await counted(store, DEFAULT_TENANT, actions=("refund",)) == 0
    )

    elsewhere = await store.activities.add_many([chosen(1, tenant="acme", action="refund")])
    assert (elsewhere.inserted, list(elsewhere.conflicts)) == (1, [])

    # Within one batch: the first record stores the event, a later one with other content conflicts.
    batch = await store.activities.add_many([chosen(3), chosen(3, action="refund"), chosen(3)])
    assert (batch.inserted, batch.duplicates, list(batch.conflicts)) == (1, 2, [(DEFAULT_TENANT, "c0003")])

    # A record without a fingerprint (a server-chosen id, or one written before fingerprints) says nothing
    # of its content: a duplicate of it is the same record again (a redelivery, a replay).
    unprinted = Activity.restore(**{**vars_of(chosen(1, action="other")), "fingerprint": None})
    assert list((await store.activities.add_many([unprinted])).conflicts) == []
    # But a client choosing the id of an event stored without one cannot be told it is the same event:
    # a conflict, never a silent duplicate (the stored event stays).
    server_named = make(9)
    await store.activities.add_many([server_named])
    claimed = Activity.restore(**{**vars_of(make(9, action="refund")), "fingerprint": "f"})
    assert list((await store.activities.add_many([claimed])).conflicts) == [server_named.key]
    assert await store.activities.get(*server_named.key) == server_named
    assert await counted(store, DEFAULT_TENANT) == 4


async def test_an_erasure_removes_exactly_the_events_it_covers_and_their_counts(store: Store) -> None:
    requested_at = BASE + timedelta(minutes=10)
    covered = [make(i, tenant="acme", user="u1") for i in range(0, 10, 2)]  # received before the request
    later = [make(i, tenant="acme", user="u1") for i in (10, 12, 14)]  # received at or after it: kept
    neighbour = [make(i, tenant="acme", user="u2") for i in range(1, 10, 2)]
    elsewhere = [make(i, tenant="globex", user="u1") for i in range(0, 10, 3)]
    await store.activities.add_many([*covered, *later, *neighbour, *elsewhere])
    erasure = Erasure("er-1", "acme", "u1", requested_at)

    assert await store.activities.erase(erasure) == len(covered)
    kept = await store.activities.find(ActivityQuery(tenant="acme", limit=100))
    assert sorted(a.id for a in kept.items) == sorted(a.id for a in [*later, *neighbour])
    assert (await store.activities.find(ActivityQuery(tenant="globex", limit=100))).total == len(elsewhere)
    assert await counted(store, "acme") == len(later) + len(neighbour)
    assert await counted(store, "acme", user_id="u1") == len(later)
    assert await counted(store, "globex") == len(elsewhere)

    assert await store.activities.erase(erasure) == 0
    assert await counted(store, "acme") == len(later) + len(neighbour)


async def test_an_erased_users_dead_letters_are_forgotten(store: Store) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    letters = [
        DeadLetter("t:0:1", "e1", "RejectedByStore", "x", before - timedelta(minutes=2), "acme", "u1"),
        DeadLetter("t:0:2", "e2", "Conflict", "x", before - timedelta(minutes=1), "acme", "u1"),
        DeadLetter("t:0:3", "e3", "Conflict", "x", before + timedelta(minutes=1), "acme", "u1"),  # after
        DeadLetter("t:0:4", "e4", "Conflict", "x", before - timedelta(minutes=1), "acme", "u2"),
        DeadLetter("t:0:5", "e5", "Conflict", "x", before - timedelta(minutes=1), "globex", "u1"),
        DeadLetter("t:0:6", None, "UndecodableMessage", "x", before - timedelta(minutes=1)),
    ]
    for letter in letters:
        await store.dead_letters.add(letter)
    assert await store.dead_letters.error_types("acme", "e2") == {"Conflict"}
    assert await store.dead_letters.error_types("globex", "e2") == set()

    assert await store.dead_letters.forget_user("acme", "u1", before) == 2
    assert await store.dead_letters.forget_user("acme", "u1", before) == 0
    remaining = {
        event_id: await store.dead_letters.error_types(tenant, event_id)
        for tenant, event_id in (
            ("acme", "e1"),
            ("acme", "e2"),
            ("acme", "e3"),
            ("acme", "e4"),
            ("globex", "e5"),
        )
    }
    assert remaining == {"e1": set(), "e2": set(), "e3": {"Conflict"}, "e4": {"Conflict"}, "e5": {"Conflict"}}


async def test_the_erasures_requested_are_kept_per_tenant(store: Store) -> None:
    older = Erasure("er-1", "acme", "u1", BASE)
    newer = Erasure("er-2", "acme", "u1", BASE + timedelta(hours=1))
    await store.erasures.add(older)
    await store.erasures.add(newer)
    await store.erasures.add(Erasure("er-3", "globex", "u2", BASE + timedelta(hours=2)))

    assert await store.erasures.get("acme", "er-1") == older
    assert await store.erasures.get("globex", "er-1") is None  # another tenant's is as absent as none
    assert await store.erasures.get("acme", "er-9") is None
    found = await store.erasures.erased_before([("acme", "u1"), ("globex", "u1"), ("acme", "u3")])
    assert found == {("acme", "u1"): newer.requested_at}
    assert await store.erasures.erased_before([]) == {}


LEASE = timedelta(minutes=5)


async def test_an_erasure_is_claimed_by_one_at_a_time_until_its_lease_runs_out(store: Store) -> None:
    now = BASE + timedelta(days=1)
    await store.erasures.add(Erasure("er-2", "acme", "u2", BASE + timedelta(hours=1)))
    await store.erasures.add(Erasure("er-1", "acme", "u1", BASE))

    first = await store.erasures.claim(now, LEASE)
    assert first is not None and (first.id, first.status) == ("er-1", ErasureStatus.RUNNING)  # oldest first
    second = await store.erasures.claim(now, LEASE)
    assert second is not None and second.id == "er-2"
    assert await store.erasures.claim(now + LEASE - timedelta(seconds=1), LEASE) is None  # both held

    # A holder that stopped lets its lease run out: another takes the erasure over.
    taken_over = await store.erasures.claim(now + LEASE, LEASE)
    assert taken_over is not None and taken_over.id == "er-1"
    assert await store.erasures.get("acme", "er-1") == replace(taken_over, held_until=None)

    # The first holder, back late, can neither finish it nor free it for a third.
    assert await store.erasures.record_pass(first, 2, now + LEASE) is False
    third = await store.erasures.claim(now + LEASE, LEASE)
    assert third is not None and third.id == "er-2"  # whose lease ran out too; er-1 stays held
    assert await store.erasures.claim(now + LEASE, LEASE) is None
    late = await store.erasures.get("acme", "er-1")
    assert late is not None and (late.status, late.removed) == (ErasureStatus.RUNNING, 2)
    assert await store.erasures.record_pass(taken_over, 1, now + LEASE) is True


async def test_claims_made_together_take_an_erasure_once(store: Store) -> None:
    now = BASE + timedelta(days=1)
    await store.erasures.add(Erasure("er-1", "acme", "u1", BASE))
    claims = await asyncio.gather(*(store.erasures.claim(now, LEASE) for _ in range(5)))
    assert [c.id for c in claims if c is not None] == ["er-1"]


async def test_a_pass_finishes_an_erasure_unless_it_was_raced(store: Store) -> None:
    now = BASE + timedelta(days=1)
    await store.erasures.add(Erasure("er-1", "acme", "u1", BASE))
    claimed = await store.erasures.claim(now, LEASE)
    assert claimed is not None

    await store.erasures.raced([("acme", "u1"), ("acme", "nobody")])  # a write stored a covered event
    assert await store.erasures.record_pass(claimed, 3, now + timedelta(seconds=1)) is False
    again = await store.erasures.get("acme", "er-1")
    assert again is not None
    assert (again.status, again.removed, again.generation, again.finished_at) == (
        ErasureStatus.RUNNING,
        3,
        1,
        None,
    )

    reclaimed = await store.erasures.claim(now + timedelta(seconds=2), LEASE)  # the pass released it
    assert reclaimed is not None and reclaimed.generation == 1
    finished = now + timedelta(seconds=3)
    assert await store.erasures.record_pass(reclaimed, 1, finished) is True
    done = await store.erasures.get("acme", "er-1")
    assert done is not None and (done.status, done.removed, done.finished_at) == (
        ErasureStatus.DONE,
        4,
        finished,
    )
    assert await store.erasures.claim(now + timedelta(days=1), LEASE) is None  # done: nothing to claim


async def test_a_race_after_an_erasure_is_done_reopens_it(store: Store) -> None:
    now = BASE + timedelta(days=1)
    await store.erasures.add(Erasure("er-1", "acme", "u1", BASE))
    await store.erasures.add(Erasure("er-2", "globex", "u1", BASE))  # same user id, another tenant
    for _ in range(2):
        claimed = await store.erasures.claim(now, LEASE)
        assert claimed is not None and await store.erasures.record_pass(claimed, 0, now)

    await store.erasures.raced([("acme", "u1")])
    reopened = await store.erasures.get("acme", "er-1")
    assert reopened is not None
    assert (reopened.status, reopened.generation, reopened.finished_at) == (ErasureStatus.RUNNING, 1, None)
    untouched = await store.erasures.get("globex", "er-2")
    assert untouched is not None and untouched.status is ErasureStatus.DONE
    claimed = await store.erasures.claim(now + timedelta(seconds=1), LEASE)
    assert claimed is not None and (claimed.id, claimed.generation) == ("er-1", 1)
    assert await store.erasures.record_pass(claimed, 0, now + timedelta(seconds=2)) is True
