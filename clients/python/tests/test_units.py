"""Pure parts: event ids, times, the delivery policy, Retry-After, backoff."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from activity_client._delivery import Backoff, Batch, judge, retry_after_seconds
from activity_client._events import Event, _IsoClock, iso
from activity_client._ids import UuidV7


def test_ids_are_rfc_9562_version_7_and_sort_in_creation_order() -> None:
    ids = UuidV7()
    made = [ids() for _ in range(20_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    parsed = uuid.UUID(made[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    millis = int(made[0].replace("-", "")[:12], 16)
    assert abs(millis / 1000 - datetime.now(UTC).timestamp()) < 60


def test_ids_from_many_threads_are_unique() -> None:
    ids = UuidV7()
    out: list[list[str]] = [[] for _ in range(8)]
    threads = [threading.Thread(target=lambda o=o: o.extend(ids() for _ in range(5_000))) for o in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({i for o in out for i in o}) == 40_000


def test_id_fields_are_where_rfc_9562_puts_them_and_the_counter_counts_within_a_millisecond() -> None:
    ids = UuidV7()
    made = [uuid.UUID(ids()) for _ in range(2_000)]
    by_ms: dict[int, list[int]] = {}
    for u in made:
        assert u.version == 7 and u.variant == uuid.RFC_4122
        # 48 bits of milliseconds, 4 of version, 12 + 2 (variant) + 30: the counter, then 32 random bits.
        counter = (u.int >> 64 & 0xFFF) << 30 | (u.int >> 32 & 0x3FFFFFFF)
        by_ms.setdefault(u.int >> 80, []).append(counter)
    for counters in by_ms.values():
        assert counters == list(range(counters[0], counters[0] + len(counters)))


def test_the_clock_text_is_utc_with_milliseconds_and_changes_with_each_millisecond() -> None:
    clock = _IsoClock()
    moment = datetime(2026, 11, 26, 23, 59, 59, 998_000, tzinfo=UTC)
    ns = int(moment.timestamp()) * 1_000_000_000 + 998_000_000
    assert clock.format(ns) == "2026-11-26T23:59:59.998Z"
    assert clock.format(ns + 999_999) == "2026-11-26T23:59:59.998Z"  # the same millisecond, cached
    assert clock.format(ns + 1_000_000) == "2026-11-26T23:59:59.999Z"
    assert clock.format(ns + 2_000_000) == "2026-11-27T00:00:00.000Z"
    assert clock.format(ns) == "2026-11-26T23:59:59.998Z"  # a clock stepped back is followed


def test_times_are_utc_with_milliseconds() -> None:
    assert iso(datetime(2026, 11, 26, 10, 0, 0, 999_999)) == "2026-11-26T10:00:00.999Z"
    assert iso(datetime(2026, 11, 26, 12, 0, tzinfo=UTC) + timedelta(hours=1)) == "2026-11-26T13:00:00.000Z"


def test_retry_after_is_read_as_seconds_or_a_date_and_capped() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("86400") == 300.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = retry_after_seconds(later)
    assert seconds is not None and 25 < seconds <= 30


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    backoff = Backoff(base=0.1, cap=2.0)
    for attempt, cap in [(0, 0.1), (3, 0.8), (10, 2.0), (1_000, 2.0)]:
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays) and max(delays) > cap / 2


def _batch(n: int) -> Batch:
    return Batch([Event(i, b'{"id":"%b"' % _id(i).encode()) for i in range(n)])


def _id(i: int) -> str:
    """A 36-character id, as the body carries it (the event reads its id from there)."""
    return f"id-{i:033d}"


def _judge(
    batch: Batch, status: int, body: bytes = b"", retry_after: str | None = None, *, gzipped: bool = False
):
    return judge(
        batch,
        status,
        retry_after,
        body,
        gzipped=gzipped,
        backoff=Backoff(0.1, 1.0),
        auth_retry_time=10.0,
        now=100.0,
    )


def test_503_and_429_pause_the_whole_client_but_500_only_the_batch() -> None:
    for status in (503, 429):
        verdict = _judge(_batch(2), status, retry_after="3")
        assert verdict.pause_all == 3.0 and verdict.delay >= 3.0 and len(verdict.resend) == 1
    verdict = _judge(_batch(2), 500, retry_after="3")
    assert verdict.pause_all == 0 and verdict.delay >= 3.0


def test_a_400_resends_what_it_did_not_reject() -> None:
    body = b'{"results": [{"index": 0, "status": "rejected", "errors": []}]}'
    verdict = _judge(_batch(2), 400, body)
    assert [e.id for e in verdict.finished] == [_id(0)]
    assert [[e.id for e in b.events] for b in verdict.resend] == [[_id(1)]]


def test_401_is_retried_until_auth_retry_time_then_refused() -> None:
    batch = _batch(1)
    first = judge(batch, 401, None, b"", gzipped=False, backoff=Backoff(), auth_retry_time=10.0, now=100.0)
    assert first.resend == [batch] and not first.refusals
    later = judge(batch, 401, None, b"", gzipped=False, backoff=Backoff(), auth_retry_time=10.0, now=110.0)
    assert not later.resend and [r.reason for r in later.refusals] == ["unauthorized"]


def test_a_202_without_results_counts_as_all_accepted() -> None:
    verdict = _judge(_batch(3), 202, b"not json")
    assert verdict.accepted == 3 and len(verdict.finished) == 3


def test_a_202_that_rejects_nothing_is_read_without_parsing_every_result() -> None:
    for body in [
        b'{"accepted":3,"rejected":0,"results":[]}',
        b'{"accepted": 3, "rejected": 0, "results": []}',
    ]:
        verdict = _judge(_batch(3), 202, body)
        assert verdict.accepted == 3 and not verdict.refusals
    tricky = b'{"accepted":2,"rejected":1,"results":[{"index":1,"status":"rejected","errors":[]}]}'
    verdict = _judge(_batch(3), 202, tricky)
    assert verdict.accepted == 2 and [r.event_id for r in verdict.refusals] == [_id(1)]
