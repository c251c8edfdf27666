"""Shapes of GET /api/activities/stats: the query parameters and the counts per bucket."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from activity_service.application.count_activities import Counts
from activity_service.domain.activity import MAX_ACTION_LENGTH, MAX_USER_ID_LENGTH
from activity_service.domain.stats import MAX_BUCKETS, CountQuery, Interval
from activity_service.domain.times import to_iso
from activity_service.interfaces.http.schemas.common import IsoDateOrDateTime
from activity_service.interfaces.http.schemas.reads import bound


class StatsParams(BaseModel):
    """Filters combine with AND. Unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")

    interval: Interval = Field(description="Bucket size: `minute`, `hour` or `day` (UTC).")
    startDate: IsoDateOrDateTime = Field(description="The first bucket is the one holding this time.")
    endDate: IsoDateOrDateTime = Field(
        description=f"The last bucket is the one holding this time (a bare date: its last instant). At most "
        f"{MAX_BUCKETS} buckets from startDate to endDate."
    )
    userId: StrictStr | None = Field(default=None, min_length=1, max_length=MAX_USER_ID_LENGTH)
    action: list[Annotated[str, Field(min_length=1, max_length=MAX_ACTION_LENGTH)]] = Field(
        default_factory=list, max_length=20, description="Repeat to count any of several actions."
    )
    groupBy: Literal["action"] | None = Field(
        default=None, description="`action`: split each bucket by action."
    )

    def to_query(self, tenant: str) -> CountQuery:
        """The tenant's counts these parameters ask for."""
        start, end = bound(self.startDate, first=True), bound(self.endDate, first=False)
        assert start is not None and end is not None  # both are required
        return CountQuery(
            tenant=tenant,
            interval=self.interval,
            start=start,
            end=end,
            user_id=self.userId,
            actions=tuple(self.action),
            by_action=self.groupBy == "action",
        )


class BucketOut(BaseModel):
    start: str = Field(description="The bucket's first instant, ISO-8601 UTC.")
    total: int
    byAction: dict[str, int] | None = Field(
        default=None, description="With groupBy=action: total per action."
    )


class StatsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "interval": "hour",
                    "buckets": [
                        {
                            "start": "2026-11-26T10:00:00.000Z",
                            "total": 42,
                            "byAction": {"page_view": 40, "buy": 2},
                        },
                        {"start": "2026-11-26T11:00:00.000Z", "total": 0, "byAction": {}},
                    ],
                    "freshUntil": "2026-11-26T11:59:58.120Z",
                }
            ]
        }
    )

    interval: Interval
    buckets: list[BucketOut] = Field(description="Every bucket in time order, the empty ones included.")
    freshUntil: str | None = Field(
        description="Every event received before this time is counted; null while unknown."
    )


def stats_body(counts: Counts, query: CountQuery) -> dict[str, Any]:
    buckets = []
    for bucket in counts.buckets:
        out: dict[str, Any] = {"start": to_iso(bucket.start), "total": bucket.total}
        if query.by_action:
            out["byAction"] = dict(bucket.by_action)
        buckets.append(out)
    return {
        "interval": query.interval.value,
        "buckets": buckets,
        "freshUntil": None if counts.fresh_until is None else to_iso(counts.fresh_until),
    }
