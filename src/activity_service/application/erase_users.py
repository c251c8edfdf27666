"""Erasure: forget a user of a tenant (domain/erasure.py says what an erasure covers).

- RequestErasure records it (the API answers 202 at once); from then on every covered event is
  suppressed wherever it is stored (ErasedUsers);
- RunErasures (in the consumer) removes the covered events already stored, with their counts and
  dead-letter records, and reports it done;
- GetErasure tells how it goes.

Nothing covered comes back, even from a write racing the request: a writer stores, *then* asks whether
an erasure covers what it stored (ErasedUsers.after_storing). An erasure recorded before that question
is seen, and its erasure runs again; one recorded after it began its pass after the write, so the pass
removes what was written.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from activity_service.domain.activity import Activity
from activity_service.domain.erasure import Erasure, UserKey, covered
from activity_service.domain.errors import DomainError
from activity_service.domain.ports import ActivityRepository, Clock, DeadLetterLog, ErasureLog, IdGenerator

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
"""How long a consumer holds an erasure it runs before another may take it over (it died)."""

FRESH_FOR = timedelta(seconds=1)
"""How long LiveErasures reuses what the erasure log said of a user."""


class LiveErasures:
    """Which users an erasure covers, for readers that ask many times a second: the live tail (every
    stream, every batch) and the API's resend check. What the log says of a user is reused for
    ``fresh_for`` (so an erasure recorded by another process is seen within that), one lookup at a time
    for the whole process; an erasure recorded through this process is known at once (``note``)."""

    def __init__(
        self, erasures: ErasureLog, clock: Clock, *, fresh_for: timedelta = FRESH_FOR, capacity: int = 100_000
    ) -> None:
        self._erasures = erasures
        self._clock = clock
        self._fresh_for = fresh_for
        self._capacity = capacity
        self._known: OrderedDict[UserKey, tuple[datetime, datetime | None]] = OrderedDict()
        self._lookup = asyncio.Lock()
        self.noted = 0
        """How many erasures this process noted: an answer given before the last one may be stale."""

    async def latest(self, users: Collection[UserKey]) -> dict[UserKey, datetime]:
        """For those of ``users`` that were erased, the latest request time (as ErasureLog.erased_before)."""
        if not self._stale(users):
            return self._answer(users)
        async with self._lookup:  # the streams that waited for this lookup find its answer after it
            if stale := self._stale(users):
                found = await self._erasures.erased_before(stale)
                checked = self._clock.now()
                for user in stale:
                    # an erasure noted while the lookup ran is newer than the lookup's answer can be
                    self._known[user] = (checked, _later(found.get(user), self._known_erased(user)))
            return self._answer(users)  # no await since the check: every user is known

    async def not_erased(self, activities: Sequence[Activity]) -> list[int]:
        """The indexes of the activities no erasure covers."""
        if not activities:
            return []
        erased = await self.latest({(a.tenant, a.user_id) for a in activities})
        return [i for i, a in enumerate(activities) if not covered(a, erased)]

    def note(self, erasure: Erasure) -> None:
        self.noted += 1
        user = (erasure.tenant, erasure.user_id)
        self._known[user] = (self._clock.now(), _later(erasure.requested_at, self._known_erased(user)))

    def _known_erased(self, user: UserKey) -> datetime | None:
        known = self._known.get(user)
        return None if known is None else known[1]

    def _answer(self, users: Collection[UserKey]) -> dict[UserKey, datetime]:
        latest = {}
        for user in users:
            requested_at = self._known[user][1]
            self._known.move_to_end(user)
            if requested_at is not None:
                latest[user] = requested_at
        while len(self._known) > max(self._capacity, len(users)):
            self._known.popitem(last=False)
        return latest

    def _stale(self, users: Collection[UserKey]) -> list[UserKey]:
        fresh_since = self._clock.now() - self._fresh_for
        return [u for u in users if (known := self._known.get(u)) is None or known[0] <= fresh_since]


def _later(one: datetime | None, other: datetime | None) -> datetime | None:
    if one is None or other is None:
        return one or other
    return max(one, other)


class RequestErasure:
    def __init__(
        self, erasures: ErasureLog, ids: IdGenerator, clock: Clock, live: LiveErasures | None = None
    ) -> None:
        self._erasures = erasures
        self._ids = ids
        self._clock = clock
        self._live = live

    async def execute(self, tenant: str, user_id: str) -> Erasure:
        erasure = Erasure(
            id=self._ids.new_id(), tenant=tenant, user_id=user_id, requested_at=self._clock.now()
        )
        await self._erasures.add(erasure)
        if self._live is not None:
            self._live.note(erasure)
        log.info("erasure %s requested for a user of tenant %s", erasure.id, tenant)
        return erasure


class ErasureNotFound(DomainError):
    def __init__(self, erasure_id: str) -> None:
        self.erasure_id = erasure_id
        super().__init__(f"no erasure with id {erasure_id!r}")


class GetErasure:
    """The tenant's erasure of that id; ErasureNotFound when there is none, also when it is another
    tenant's (the two cannot be told apart)."""

    def __init__(self, erasures: ErasureLog) -> None:
        self._erasures = erasures

    async def execute(self, tenant: str, erasure_id: str) -> Erasure:
        erasure = await self._erasures.get(tenant, erasure_id)
        if erasure is None:
            raise ErasureNotFound(erasure_id)
        return erasure


class ErasedUsers:
    """What a writer of stored events asks: which of these are covered by an erasure?"""

    def __init__(self, erasures: ErasureLog) -> None:
        self._erasures = erasures

    async def not_erased(self, activities: Sequence[Activity]) -> list[int]:
        """The indexes of the activities no erasure covers (the others must not be stored)."""
        if not activities:
            return []
        erased = await self._erasures.erased_before({(a.tenant, a.user_id) for a in activities})
        return [i for i, a in enumerate(activities) if not covered(a, erased)]

    async def after_storing(self, activities: Sequence[Activity]) -> None:
        """Just stored: if an erasure recorded meanwhile covers any of them, run it again."""
        if not activities:
            return
        erased = await self._erasures.erased_before({(a.tenant, a.user_id) for a in activities})
        raced: set[UserKey] = {(a.tenant, a.user_id) for a in activities if covered(a, erased)}
        if raced:
            log.info("stored events of %d users an erasure covers; their erasures run again", len(raced))
            await self._erasures.raced(raced)


class RunErasures:
    """Run every erasure that needs a pass, until none does; returns how many passes ran.

    A pass removes the covered events that are stored and the user's dead-letter records from before the
    request; the erasure is done after a pass unless a write raced it (then it stays for another pass).
    """

    def __init__(
        self,
        repository: ActivityRepository,
        dead_letters: DeadLetterLog,
        erasures: ErasureLog,
        clock: Clock,
        *,
        lease: timedelta = LEASE,
    ) -> None:
        self._repository = repository
        self._dead_letters = dead_letters
        self._erasures = erasures
        self._clock = clock
        self._lease = lease

    async def execute(self) -> int:
        passes = 0
        while (erasure := await self._erasures.claim(self._clock.now(), self._lease)) is not None:
            removed = await self._repository.erase(erasure)
            letters = await self._dead_letters.forget_user(
                erasure.tenant, erasure.user_id, erasure.requested_at
            )
            done = await self._erasures.record_pass(erasure, removed, self._clock.now())
            passes += 1
            log.info(
                "erasure %s: removed %d events and %d dead-letter records%s",
                erasure.id,
                removed,
                letters,
                "; done" if done else "; raced by a write, another pass follows",
            )
        return passes
