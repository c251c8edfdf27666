"""Persist what the consumer read from the event log: the policy that decides what may be committed."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from activity_service.application.erase_users import ErasedUsers
from activity_service.domain.activity import Activity
from activity_service.domain.delivery import DeadLetter, LogPosition, Received, Settled
from activity_service.domain.ports import (
    ActivityRepository,
    Clock,
    DeadLetterLog,
    DeadLetterTopic,
    PersistObserver,
    StoreOutcome,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
REJECTED_BY_STORE = "RejectedByStore"
CONFLICT = "Conflict"
CONFLICT_REASON = "the tenant's event with this id was stored with other content; this one was not stored"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_seconds: float
    max_seconds: float

    def delay(self, attempt: int) -> float:
        """Exponential with full jitter, so many consumers retrying do not hit the store in step."""
        return random.uniform(0, min(self.max_seconds, self.initial_seconds * 2**attempt))


class _Unobserved:
    def stored(self, outcome: StoreOutcome, seconds: float) -> None:
        return None

    def dead_lettered(self, error_type: str) -> None:
        return None

    def retried(self, operation: str) -> None:
        return None

    def suppressed(self, count: int) -> None:
        return None


class PersistActivities:
    """Settle a batch read from the event log, so that it may be committed:

    1. **store** its readable activities, each once by its tenant and id (one idempotent write), except
       those an erasure covers (suppressed: never stored; erase_users.py);
    2. **classify** each: newly stored, already stored (a redelivery), refused by the store for good (a
       shape it cannot hold), or unknown (the write raised: connection lost, timeout, stepping down);
    3. **dead-letter** what the store refused, what could not be read, and a resend whose content
       conflicts with the stored event of its id: a copy on the dead-letter topic and a record (the
       event's status then reads ``conflict``), so the partition moves on and nothing vanishes unexplained;
    4. **retry** with backoff while an outcome is unknown (the write again, or a dead letter): never skip;
    5. report the batch **settled**. Only then may its offsets be committed. Returns None when ``stop`` is
       set before it settled: then nothing of it may be committed.
    """

    def __init__(
        self,
        repository: ActivityRepository,
        dead_letter_topic: DeadLetterTopic,
        dead_letter_log: DeadLetterLog,
        *,
        erased: ErasedUsers,
        retry: RetryPolicy,
        clock: Clock,
        observer: PersistObserver | None = None,
    ) -> None:
        self._repository = repository
        self._erased = erased
        self._topic = dead_letter_topic
        self._log = dead_letter_log
        self._retry = retry
        self._clock = clock
        self._observer: PersistObserver = observer if observer is not None else _Unobserved()

    async def execute(self, batch: Sequence[Received], stop: asyncio.Event) -> Settled | None:
        readable = [m for m in batch if m.activity is not None]
        outcome, suppressed = StoreOutcome(inserted=0, duplicates=0), 0
        if readable:
            activities = [m.activity for m in readable if m.activity is not None]
            positions = [m.position for m in readable]
            stored = await self._until_known(partial(self._store, activities, positions), "store", stop)
            if stored is None:
                return None
            outcome, suppressed = stored
        by_key = {m.activity.key: m for m in readable if m.activity is not None}
        dead = [(m, m.error_type, m.reason) for m in batch if m.activity is None]
        dead += [(by_key[key], REJECTED_BY_STORE, reason) for key, reason in outcome.rejected.items()]
        dead += [(by_key[key], CONFLICT, CONFLICT_REASON) for key in outcome.conflicts]
        for message, error_type, reason in dead:
            log.warning("dead-lettering %s (%s): %s", message.source, error_type, reason)
            sent = await self._until_known(
                partial(self._dead_letter, message, error_type, reason), "dead_letter", stop
            )
            if sent is None:
                return None
            self._observer.dead_lettered(error_type)
        return Settled(
            records=len(batch),
            inserted=outcome.inserted,
            duplicates=outcome.duplicates,
            dead_lettered=len(dead),
            suppressed=suppressed,
        )

    async def _store(
        self, activities: Sequence[Activity], positions: Sequence[LogPosition]
    ) -> tuple[StoreOutcome, int]:
        """Stores what no erasure covers; returns the outcome and how many were suppressed."""
        kept = await self._erased.not_erased(activities)
        suppressed = len(activities) - len(kept)
        if suppressed:
            activities = [activities[i] for i in kept]
            positions = [positions[i] for i in kept]
            self._observer.suppressed(suppressed)
        started = time.perf_counter()
        outcome = await self._repository.add_many(activities, positions) if activities else StoreOutcome(0, 0)
        self._observer.stored(outcome, time.perf_counter() - started)
        await self._erased.after_storing(activities)
        return outcome, suppressed

    async def _dead_letter(self, message: Received, error_type: str, reason: str) -> bool:
        await self._topic.send(message, error_type, reason)
        activity = message.activity
        who: tuple[str | None, str | None, str | None] = (
            (activity.id, activity.tenant, activity.user_id)
            if activity is not None
            else (message.event_id, message.tenant, message.user_id)
        )
        event_id, tenant, user_id = who
        letter = DeadLetter(
            message.source, event_id, error_type, reason[:1000], self._clock.now(), tenant, user_id
        )
        await self._log.add(letter)
        return True

    async def _until_known(
        self, operation: Callable[[], Awaitable[T]], what: str, stop: asyncio.Event
    ) -> T | None:
        """Retry ``operation`` with backoff until it succeeds; None if ``stop`` is set before it does."""
        attempt = 0
        while True:
            try:
                return await operation()
            except Exception as exc:  # the outcome is unknown: retry the whole (idempotent) operation
                delay = self._retry.delay(attempt)
                attempt += 1
                self._observer.retried(what)
                log.warning(
                    "%s failed (attempt %d), retrying in %.2fs: %s: %s",
                    what,
                    attempt,
                    delay,
                    type(exc).__name__,
                    exc,
                )
            if stop.is_set():
                log.warning("stopping while %s still fails; the batch stays uncommitted", what)
                return None
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
