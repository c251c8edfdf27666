"""Timing read requests against an API process: sequential, one at a time, the kinds interleaved round by
round so that the noise of a shared machine spreads evenly over them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.errors import BenchError
from bench.stats import ms, percentile


@dataclass(frozen=True)
class Kind:
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    every: int = 1
    """Sampled every this many rounds (the costly kinds less often, so that the run stays short)."""


def get(client: httpx.Client, path: str, params: dict[str, Any]) -> dict[str, Any]:
    response = client.get(path, params=params)
    if response.status_code != 200:
        raise BenchError(f"GET {path} {params} answered {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    if "data" in body and not body["data"]:
        raise BenchError(
            f"GET {path} {params} returned no rows; the query data set is not what the bench expects"
        )
    return body


def timed(client: httpx.Client, kinds: dict[str, Kind], rounds: int, say: Any) -> dict[str, list[float]]:
    """Seconds each request took, per kind, from sent to the answer read and parsed."""
    timings: dict[str, list[float]] = {k: [] for k in kinds}
    report = time.monotonic()
    for round_ in range(rounds):
        for name, kind in kinds.items():
            if round_ % kind.every:
                continue
            began = time.perf_counter()
            get(client, kind.path, kind.params)
            timings[name].append(time.perf_counter() - began)
        if time.monotonic() - report > 10:
            report = time.monotonic()
            say(f"  round {round_ + 1}/{rounds}")
    return timings


def latency(timings: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        k: {
            "p50_ms": ms(percentile(v, 50)),
            "p99_ms": ms(percentile(v, 99)),
            "max_ms": ms(max(v, default=0.0)),
            "samples": len(v),
        }
        for k, v in timings.items()
    }
