"""The common end of every scenario: heal, let the client finish, wait for the consumer, reconcile."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tests.conftest import Stack
from tests.e2e.processes import Deployment
from tests.faults.ledger import CatchUp, Report, topic_census, wait_caught_up
from tests.faults.traffic import Traffic


@contextmanager
def outage(stack: Stack, service: str) -> Iterator[dict[str, float]]:
    """Stops ``service`` of the shared stack and always starts it again. Yields the moments (monotonic):
    ``stopping`` (before the stop), ``down`` (it is stopped), then, once the block is left, ``starting``
    and ``up`` (it answers again)."""
    moments = {"stopping": time.monotonic()}
    try:
        stack.stop(service)
        moments["down"] = time.monotonic()
        yield moments
    finally:
        moments["starting"] = time.monotonic()
        stack.start(service)
        moments["up"] = time.monotonic()


def group_of(deployment: Deployment) -> str:
    return f"{deployment.name}-group"


def wait_stored(database: Any, ids: Collection[str], timeout: float) -> float | None:
    """Seconds until every id in ``ids`` is stored, or None after ``timeout``."""
    began = time.monotonic()
    wanted = set(ids)
    while time.monotonic() - began < timeout:
        if database["activities"].count_documents({}) >= len(wanted):
            stored = {d["_id"] for d in database["activities"].find({}, projection={"_id": 1})}
            if wanted <= stored:
                return time.monotonic() - began
        time.sleep(0.25)
    return None


def finish(
    stack: Stack,
    deployment: Deployment,
    database: Any,
    traffic: Traffic,
    report: Report,
    *,
    drain_timeout: float = 60,
    catch_up_timeout: float = 120,
) -> CatchUp:
    """Stops the load, retries what is still unacknowledged, waits until the consumer group committed the
    whole topic, and writes the ledger into the report."""
    traffic.drain(drain_timeout)
    catch = wait_caught_up(
        stack, database, deployment.name, group_of(deployment), traffic.acked, catch_up_timeout
    )
    report.ledger = catch.ledger
    report.details.append(census(stack, deployment.name))
    if traffic.unacknowledged:
        report.details.append(f"{len(traffic.unacknowledged)} generated events never acknowledged")
    if not catch.complete:
        report.details.append(f"consumer did not catch up within {catch_up_timeout:.0f}s (lag {catch.lag})")
    return catch


def census(stack: Stack, topic: str) -> str:
    """The report's word on the topic: how many records carried how many distinct events."""
    try:
        records, ids = asyncio.run(topic_census(stack, topic))
    except Exception as exc:  # informative only; the shared broker may be restarting
        return f"topic not read ({type(exc).__name__})"
    return f"topic {records} records for {ids} ids"


def settle(traffic: Traffic, catch: CatchUp) -> None:
    """The assertions every scenario shares; call them once the report holds what happened."""
    assert not traffic.anomalies, traffic.anomalies[:5]
    assert not traffic.unacknowledged, (
        f"{len(traffic.unacknowledged)} events never got a 202, even when retried after the fault healed"
    )
    assert catch.complete, (
        f"the consumer did not catch up (lag {catch.lag}, {len(catch.ledger.lost)} missing)"
    )


PUBLISH_DEADLINE = 2.0
GRACE = 1.0
"""An answer may come this much after the publish deadline: reading the request, writing the answer."""


def outcomes(attempts: Sequence[Any]) -> dict[str, int]:
    """How many attempts ended in each status ("no answer" when none came)."""
    return dict(Counter("no answer" if a.status is None else str(a.status) for a in attempts))
