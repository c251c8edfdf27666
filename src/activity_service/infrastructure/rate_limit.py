"""Token buckets, one per client, kept in this process or shared by every replica through Redis.

The algorithm is GCRA, an exact token bucket that stores one number per client (its "theoretical arrival
time") and answers "allowed?", "tokens left", "full again in" and "retry in" from one store operation. In
this process that is ``LocalBuckets``, a dict lookup on a monotonic clock the caller may pass in (tests
do); shared through Redis it is throttled-py's Lua script, one round trip. If Redis stops answering, each
process falls back to its own buckets, trying Redis again every few seconds, so an outage loosens the
limit (to the same budget per process) rather than refusing or slowing traffic.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import cast
from urllib.parse import urlsplit

from redis.asyncio import Redis
from throttled.asyncio import Quota, Rate, RateLimiterType, RedisStore, Throttled
from throttled.asyncio.store import BaseStore
from throttled.exceptions import StoreUnavailableError

log = logging.getLogger(__name__)

# Buckets kept in memory at most (least recently used go first); a full bucket needs no state anyway.
MEMORY_BUCKETS = 100_000
KEY_PREFIX = "activity-service"
REDIS_TIMEOUT_SECONDS = 0.5
REDIS_CONNECTIONS = 32
REDIS_RETRY_SECONDS = 5.0
WARN_EVERY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    remaining: int
    """Tokens left: after this spend when allowed, available now when refused."""
    reset_after: float
    """Seconds until the bucket is full again."""
    retry_after: float
    """When refused: seconds until the tokens asked for are there."""


class LocalBuckets:
    """GCRA buckets in this process, at most ``max_buckets`` (the least recently used go first: a bucket
    that is forgotten is full, which is what an idle client's bucket is anyway)."""

    def __init__(
        self,
        rate: float,
        capacity: int,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_buckets: int = MEMORY_BUCKETS,
    ) -> None:
        self._interval = 1.0 / rate  # seconds one token takes to come back
        self._capacity = capacity
        self._monotonic = monotonic
        self._max_buckets = max_buckets
        self._arrival: OrderedDict[str, float] = OrderedDict()
        """Per bucket, when it would be full again: ``now + tokens missing * interval``."""

    def spend(self, bucket: str, cost: int) -> Verdict:
        now = self._monotonic()
        interval, capacity = self._interval, self._capacity
        full_at = max(now, self._arrival.get(bucket, now))
        missing = (full_at - now) / interval  # tokens spent and not back yet
        remaining = capacity - cost - math.ceil(missing - 1e-9)
        if remaining < 0:
            available = max(0, capacity - math.ceil(missing - 1e-9))
            retry_after = (cost - (capacity - missing)) * interval
            return Verdict(False, available, full_at - now, max(0.0, retry_after))
        full_at += cost * interval
        self._arrival[bucket] = full_at
        self._arrival.move_to_end(bucket)
        if len(self._arrival) > self._max_buckets:
            self._arrival.popitem(last=False)
        return Verdict(True, remaining, full_at - now, 0.0)


class TokenBuckets:
    """``capacity`` tokens per bucket (the burst), refilled at ``rate`` tokens per second."""

    def __init__(
        self,
        rate: float,
        capacity: int,
        storage_uri: str = "memory://",
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.capacity = capacity
        self._local = LocalBuckets(rate, capacity, monotonic=monotonic)
        self._redis: RedisStore | None = None
        self._shared: Throttled | None = None
        if urlsplit(storage_uri).scheme in ("redis", "rediss"):
            # throttled-py takes a rate as a whole number per period: an hour keeps fractional rates exact.
            quota = Quota(Rate(period=timedelta(hours=1), limit=max(1, round(rate * 3600))), burst=capacity)
            self._redis = RedisStore(
                server=storage_uri,
                options={
                    "SOCKET_TIMEOUT": REDIS_TIMEOUT_SECONDS,
                    "SOCKET_CONNECT_TIMEOUT": REDIS_TIMEOUT_SECONDS,
                    # A bounded pool: requests beyond it wait (up to the timeout) for a connection.
                    "CONNECTION_POOL_CLASS": "redis.asyncio.BlockingConnectionPool",
                    "CONNECTION_POOL_KWARGS": {
                        "max_connections": REDIS_CONNECTIONS,
                        "timeout": REDIS_TIMEOUT_SECONDS,
                    },
                },
            )
            self._shared = _buckets(quota, self._redis)
        self._warned_at = -math.inf
        self._shared_down_until = -math.inf

    @property
    def shared(self) -> bool:
        return self._redis is not None

    async def spend(self, bucket: str, cost: int = 1) -> Verdict:
        """Take ``cost`` tokens from ``bucket`` if it holds them; otherwise take nothing."""
        if self._shared is None or time.monotonic() < self._shared_down_until:
            return self._local.spend(bucket, cost)
        try:
            result = await self._shared.limit(bucket, cost=cost)
        except StoreUnavailableError as exc:
            self._shared_down_until = time.monotonic() + REDIS_RETRY_SECONDS
            self._warn(exc)
            return self._local.spend(bucket, cost)
        state = result.state
        return Verdict(
            allowed=not result.limited,
            remaining=max(0, int(state.remaining)),
            reset_after=max(0.0, float(state.reset_after)),
            retry_after=max(0.0, float(state.retry_after)),
        )

    async def close(self) -> None:
        if self._redis is not None:
            # throttled-py has no close(); its backend owns the redis-py client and its connection pool.
            client = cast(Redis, self._redis._backend.get_client())
            await client.aclose()
            await client.connection_pool.disconnect()

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "rate-limit store unavailable (%s); limiting per process until it answers again",
                exc.__cause__ or exc,
            )


def _buckets(quota: Quota, store: BaseStore) -> Throttled:
    return Throttled(using=RateLimiterType.GCRA.value, quota=quota, store=store, key_prefix=KEY_PREFIX)
