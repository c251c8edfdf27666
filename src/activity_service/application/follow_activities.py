"""Follow activities live, as the event log accepts them."""

from __future__ import annotations

import asyncio
import contextvars
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
        self._last: tuple[FeedBatch, int, asyncio.Task[FeedBatch]] | None = None
        """The last batch checked, the erasures noted then, and the check (what is kept of the batch):
        followers that share the feed's position get the same batch object one after the other, so the
        check is made once for all of them (again if this process noted an erasure meanwhile). It is
        shared while it runs too: the check may wait for the erasure log, and every follower woken by
        the same hand-over reaches the batch during that wait (200 streams each checking for itself
        was a third of the API's CPU in make bench's scenario 12)."""

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
                try:
                    kept = await self._checked(batch)
                except StoreUnavailable:
                    if first:
                        raise  # nothing sent yet: the follower is told to retry (503)
                    log.warning("live tail ended: the store cannot say which users are erased")
                    return
                first = False
                yield kept
        finally:
            await batches.aclose()  # type: ignore[attr-defined]

    async def _checked(self, batch: FeedBatch) -> FeedBatch:
        """The batch without what an erasure covers, checked once for every follower that reaches it."""
        while True:
            last = self._last
            if last is None or last[0] is not batch or last[1] != self._erased.noted:
                # a context of its own: the check's logs and traces are no one follower's request
                loop = asyncio.get_running_loop()
                check = loop.create_task(self._kept(batch), context=contextvars.Context())
                check.add_done_callback(self._settled)
                last = self._last = (batch, self._erased.noted, check)
            check = last[2]
            try:
                # shielded: a follower that leaves mid-check does not cancel it for the others
                return check.result() if check.done() else await asyncio.shield(check)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not check.cancelled() or (current is not None and current.cancelling()):
                    raise  # this follower is leaving
                self._settled(check)  # the check was cancelled, not this follower: check again

    def _settled(self, check: asyncio.Future[FeedBatch]) -> None:
        """A check that failed or was cancelled is not reused: the next follower to reach the batch
        checks again, so one store blip ends only the streams that were waiting on it. Its error is each
        waiting follower's to handle; when every one of them left first, it is dropped here rather than
        logged as never retrieved."""
        if check.cancelled() or check.exception() is not None:
            if self._last is not None and self._last[2] is check:
                self._last = None

    async def _kept(self, batch: FeedBatch) -> FeedBatch:
        kept = await self._erased.not_erased([entry.activity for entry in batch.entries])
        if len(kept) == len(batch.entries):
            return batch
        return FeedBatch([batch.entries[i] for i in kept], batch.cursor)
