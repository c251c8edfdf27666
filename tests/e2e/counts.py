"""Whether the API's counts over time equal what the store holds, bucket by bucket."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import httpx

from activity_service.domain.stats import MAX_BUCKETS, Interval
from activity_service.domain.times import from_iso, to_iso
from tests.e2e.processes import AUTH_HEADERS
from tests.stored import StoredView


def count_mismatches(base_url: str, stored: StoredView, start: datetime, end: datetime) -> list[str]:
    """Every bucket (per minute, hour and day, as far as 1,000 buckets reach from ``start``) whose count
    differs from the events stored in it; empty when the counts are exact."""
    events = stored.times_and_actions()
    problems: list[str] = []
    with httpx.Client(base_url=base_url, headers=AUTH_HEADERS, timeout=30) as http:
        for interval in Interval:
            last = min(end, interval.floor(start) + interval.length * (MAX_BUCKETS - 1))
            response = http.get(
                "/api/activities/stats",
                params={
                    "interval": interval.value,
                    "startDate": to_iso(start),
                    "endDate": to_iso(last),
                    "groupBy": "action",
                },
            )
            response.raise_for_status()
            counted = {
                (from_iso(b["start"]), action): n
                for b in response.json()["buckets"]
                for action, n in b["byAction"].items()
                if n
            }
            window = (interval.floor(start), interval.floor(last) + interval.length)
            expected = Counter(
                (interval.floor(at), action) for at, action in events if window[0] <= at < window[1]
            )
            for key in sorted(set(counted) | set(expected)):
                found, wanted = counted.get(key, 0), expected.get(key, 0)
                if found != wanted:
                    problems.append(
                        f"{interval.value} {to_iso(key[0])} {key[1]}: counted {found}, stored {wanted}"
                    )
    return problems


def around(moment: datetime, hours: float = 1) -> tuple[datetime, datetime]:
    return moment - timedelta(hours=hours), moment + timedelta(hours=hours)
