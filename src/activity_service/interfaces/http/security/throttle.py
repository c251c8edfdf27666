"""Rate limits: each request spends tokens from its client's bucket before any work, one per event.

Every answer that spent tokens says where the client stands, in the IETF RateLimit fields
(draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Policy: "default";q=<burst>;w=<seconds to refill it>``
and ``RateLimit: "default";r=<tokens left>;t=<seconds until full again>``. Over the limit: 429 with them
and Retry-After.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

from fastapi import HTTPException, Request

from activity_service.application.record_batch import BatchTooLarge
from activity_service.infrastructure.rate_limit import TokenBuckets, Verdict
from activity_service.interfaces.http.security.keys import Client

POLICY = "default"


@dataclass(frozen=True, slots=True)
class Budget:
    """What one request may spend: its client's bucket in the rate limiter (None: unlimited)."""

    buckets: TokenBuckets | None
    client: Client

    async def spend(self, cost: int, prepaid: int = 0) -> dict[str, str]:
        return await spend(self.buckets, self.client, cost, prepaid)


def budget_of(request: Request) -> Budget:
    """The Budget the ApiGate gave this request (routes under /api only)."""
    return cast(Budget, request.state.budget)


async def spend(buckets: TokenBuckets | None, client: Client, cost: int, prepaid: int = 0) -> dict[str, str]:
    """Takes ``cost`` tokens (less the ``prepaid`` ones already taken for this request) from the client's
    bucket and returns the headers for the answer, none if there was nothing left to take; raises
    HTTPException 429 when the bucket does not hold them (nothing more is taken then)."""
    if buckets is None:
        return {}
    if cost > buckets.capacity:
        raise BatchTooLarge(cost, buckets.capacity)  # could never pass: the client must split it
    if cost <= prepaid:
        return {}
    needed = cost - prepaid
    verdict = await buckets.spend(client.bucket, needed)
    headers = rate_limit_headers(verdict, buckets)
    if not verdict.allowed:
        retry = max(1, math.ceil(verdict.retry_after))
        raise HTTPException(
            429,
            f"Rate limit exceeded: this needs {needed} token(s) and {verdict.remaining} are left "
            f"(at most {buckets.capacity}, refilled at {buckets.rate:g} per second). Retry in {retry} s.",
            headers={**headers, "Retry-After": str(retry)},
        )
    return headers


def rate_limit_headers(verdict: Verdict, buckets: TokenBuckets) -> dict[str, str]:
    window = max(1, math.ceil(buckets.capacity / buckets.rate))
    return {
        "RateLimit-Policy": f'"{POLICY}";q={buckets.capacity};w={window}',
        "RateLimit": f'"{POLICY}";r={verdict.remaining};t={math.ceil(verdict.reset_after)}',
    }
