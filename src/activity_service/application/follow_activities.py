"""Follow activities live, as the event log accepts them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from activity_service.application.erase_users import LiveErasures
from activity_service.domain.errors import StoreUnavailable
from activity_service.domain.feed import ActivityFeed, Cursor, FeedBatch, FeedFilter

log = logging.getLogger(__name__)


class FollowActivities:
    """Every accepted activity matching the filter, as it arrives: read from the event log, so within
    moments of its 202 and before it is stored (a live view marks it "accepted"). Each comes with the
    cursor to resume from: following again from it gives what came after, with no gap and no repeat.
    The first batch, at once and maybe empty, says where the follower starts. A follower that cannot
    keep up is told so (FeedOverflow) rather than held without bound.

    Events an erasure covers are left out (the log keeps them until its retention, and a cursor from
    before the erasure would replay them): the erasures are checked for every batch (LiveErasures).
    While the store cannot say, the follow ends; resuming from the last cursor loses nothing."""

    def __init__(self, feed: ActivityFeed, erased: LiveErasures) -> None:
        self._feed = feed
        self._erased = erased
        self._last: tuple[FeedBatch, int, FeedBatch] | None = None
        """The last batch checked, the erasures noted then, and what was kept of it: followers that share
        the feed's position get the same batch object one after the other, so the check is made once for
        all of them (again if this process noted an erasure meanwhile)."""

    def execute(self, matching: FeedFilter, resume_from: Cursor | None = None) -> AsyncIterator[FeedBatch]:
        return self._without_erased(self._feed.follow(matching, resume_from))

    async def _without_erased(self, batches: AsyncIterator[FeedBatch]) -> AsyncIterator[FeedBatch]:
        first = True
        try:
            async for batch in batches:
                if not batch.entries:  # where a follower starts, or a filter let nothing through
                    first = False
                    yield batch
                    continue
                last = self._last
                if last is not None and last[0] is batch and last[1] == self._erased.noted:
                    first = False
                    yield last[2]
                    continue
                noted = self._erased.noted
                try:
                    kept = await self._erased.not_erased([entry.activity for entry in batch.entries])
                except StoreUnavailable:
                    if first:
                        raise  # nothing sent yet: the follower is told to retry (503)
                    log.warning("live tail ended: the store cannot say which users are erased")
                    return
                first = False
                if len(kept) != len(batch.entries):
                    kept_batch = FeedBatch([batch.entries[i] for i in kept], batch.cursor)
                else:
                    kept_batch = batch
                self._last = (batch, noted, kept_batch)
                yield kept_batch
        finally:
            await batches.aclose()  # type: ignore[attr-defined]
