"""Follow activities live, as the event log accepts them."""

from __future__ import annotations

from collections.abc import AsyncIterator

from activity_service.domain.feed import ActivityFeed, Cursor, FeedBatch, FeedFilter


class FollowActivities:
    """Every accepted activity matching the filter, as it arrives: read from the event log, so within
    moments of its 202 and before it is stored (a live view marks it "accepted"). Each comes with the
    cursor to resume from: following again from it gives what came after, with no gap and no repeat.
    The first batch, at once and maybe empty, says where the follower starts. A follower that cannot
    keep up is told so (FeedOverflow) rather than held without bound."""

    def __init__(self, feed: ActivityFeed) -> None:
        self._feed = feed

    def execute(self, matching: FeedFilter, resume_from: Cursor | None = None) -> AsyncIterator[FeedBatch]:
        return self._feed.follow(matching, resume_from)
