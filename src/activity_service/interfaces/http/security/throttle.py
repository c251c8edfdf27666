"""Rate limits: each request spends tokens from its client's bucket before any work, one per event.

A publishable key (web pages: everyone's browser holds it) spends from two buckets: one per client
address (``RATE_LIMIT_ADDRESS_*``; IPv6 addresses count per /64, which any one host may hold whole), then
the key's own. So one visitor, or one script that copied the key, runs out on its own bucket long before
the key's budget, which every visitor of the site shares, is gone.

Every answer that spent tokens says where the client stands, in the IETF RateLimit fields
(draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Policy: "default";q=<burst>;w=<seconds to refill it>``
and ``RateLimit: "default";r=<tokens left>;t=<seconds until full again>``, plus an ``"address"`` item for a
publishable key. Over the limit: 429 with them and Retry-After.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address, ip_network
from typing import cast

from fastapi import HTTPException, Request

from activity_service.application.record_batch import BatchTooLarge
from activity_service.infrastructure.rate_limit import TokenBuckets, Verdict
from activity_service.interfaces.http.security.keys import Client

POLICY = "default"
ADDRESS_POLICY = "address"
IPV6_PREFIX = 64


@dataclass(frozen=True, slots=True)
class Budget:
    """What one request may spend: its client's bucket in the rate limiter (None: unlimited), and for a
    publishable key also its client address's bucket in ``per_address`` (None: unlimited)."""

    buckets: TokenBuckets | None
    client: Client
    per_address: TokenBuckets | None = None
    address: str | None = None

    async def spend(self, cost: int, prepaid: int = 0) -> dict[str, str]:
        if not self.client.publishable or self.per_address is None:
            return await spend(self.buckets, self.client, cost, prepaid)
        # The address first: it is the smaller bucket, so a refusal there leaves the key's untouched.
        bucket = address_bucket(self.client, self.address)
        near = await _spend(self.per_address, bucket, ADDRESS_POLICY, cost, prepaid)
        try:
            key = await spend(self.buckets, self.client, cost, prepaid)
        except HTTPException as exc:
            headers = _joined(exc.headers or {}, near)
            raise HTTPException(exc.status_code, exc.detail, headers=headers) from None
        return _joined(key, near)


def budget_of(request: Request) -> Budget:
    """The Budget the ApiGate gave this request (routes under /api only)."""
    return cast(Budget, request.state.budget)


def address_bucket(client: Client, address: str | None) -> str:
    """The bucket of a publishable key's client at ``address``: per address, an IPv6 one per /64."""
    try:
        parsed = ip_address(address or "")
    except ValueError:
        return f"publishable:{client.name}@{address or 'unknown'}"
    if isinstance(parsed, IPv6Address):
        if parsed.ipv4_mapped is None:
            return f"publishable:{client.name}@{ip_network(f'{parsed}/{IPV6_PREFIX}', strict=False)}"
        parsed = parsed.ipv4_mapped
    return f"publishable:{client.name}@{parsed}"


async def spend(buckets: TokenBuckets | None, client: Client, cost: int, prepaid: int = 0) -> dict[str, str]:
    """Takes ``cost`` tokens (less the ``prepaid`` ones already taken for this request) from the client's
    bucket and returns the headers for the answer, none if there was nothing left to take; raises
    HTTPException 429 when the bucket does not hold them (nothing more is taken then)."""
    return await _spend(buckets, client.bucket, POLICY, cost, prepaid)


async def _spend(
    buckets: TokenBuckets | None, bucket: str, policy: str, cost: int, prepaid: int
) -> dict[str, str]:
    if buckets is None:
        return {}
    if cost > buckets.capacity:
        raise BatchTooLarge(cost, buckets.capacity)  # could never pass: the client must split it
    if cost <= prepaid:
        return {}
    needed = cost - prepaid
    verdict = await buckets.spend(bucket, needed)
    headers = rate_limit_headers(verdict, buckets, policy)
    if not verdict.allowed:
        retry = max(1, math.ceil(verdict.retry_after))
        whose = "this client address's share of the key" if policy == ADDRESS_POLICY else "the client"
        raise HTTPException(
            429,
            f"Rate limit exceeded for {whose}: this needs {needed} token(s) and {verdict.remaining} are left "
            f"(at most {buckets.capacity}, refilled at {buckets.rate:g} per second). Retry in {retry} s.",
            headers={**headers, "Retry-After": str(retry)},
        )
    return headers


def rate_limit_headers(verdict: Verdict, buckets: TokenBuckets, policy: str = POLICY) -> dict[str, str]:
    window = max(1, math.ceil(buckets.capacity / buckets.rate))
    return {
        "RateLimit-Policy": f'"{policy}";q={buckets.capacity};w={window}',
        "RateLimit": f'"{policy}";r={verdict.remaining};t={math.ceil(verdict.reset_after)}',
    }


def _joined(first: Mapping[str, str], second: Mapping[str, str]) -> dict[str, str]:
    """Both answers' RateLimit fields as one list each (the draft's fields are lists of limits); the
    other headers of ``first`` (Retry-After) as they are."""
    joined = dict(first)
    for name in ("RateLimit-Policy", "RateLimit"):
        items = [h[name] for h in (first, second) if name in h]
        if items:
            joined[name] = ", ".join(items)
    return joined
