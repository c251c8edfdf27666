"""Retention: which events are too old to keep."""

from __future__ import annotations

from datetime import datetime, timedelta

from activity_service.domain.stats import Interval


def retention_cutoff(now: datetime, days: int) -> datetime | None:
    """Events whose timestamp is before this time are not kept (None: every event is kept).

    Whole UTC days go at once, so that every count over time (minute, hour, day) loses whole buckets and
    stays exact: an event is kept until its day ended more than ``days`` days ago."""
    if days == 0:
        return None
    return Interval.DAY.floor(now - timedelta(days=days))
