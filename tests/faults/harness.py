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
from tests.faults.control import StackControl
from tests.faults.ledger import CatchUp, Report, topic_census, wait_caught_up
from tests.faults.traffic import Attempt, Traffic
from tests.stored import StoredView


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


@contextmanager
def crash(control: StackControl, service: str, node: int | None = None) -> Iterator[dict[str, float]]:
    """SIGKILLs ``service`` (a Kafka node with ``node``) and always starts it again, like ``outage``:
    ``stopping``, ``down`` (it is dead), then ``starting`` and ``up`` (it answers again)."""
    moments = {"stopping": time.monotonic()}
    try:
        moments["down"] = control.kill(service, node)
        yield moments
    finally:
        moments["starting"] = time.monotonic()
        moments["up"] = control.up(service, node)


def refusals(traffic: Traffic, since: float, until: float | None = None) -> list[Attempt]:
    """Ingest attempts sent from ``since`` (to ``until``) that did not get a 202."""
    return [
        a
        for a in list(traffic.attempts)
        if a.sent >= since and (until is None or a.sent <= until) and a.status != 202
    ]


def window(traffic: Traffic, since: float, until: float | None = None) -> tuple[float, str]:
    """The 503 window of the fault at ``since``: the longest stretch, from then on, during which requests
    were sent and none of them was accepted, measured between the sending of the accepted requests on
    either side (0 when nothing was refused). A fault that refuses some requests and accepts others
    leaves a short window and many refusals; the report says both."""
    attempts = sorted(
        (a for a in list(traffic.attempts) if a.sent >= since and (until is None or a.sent <= until)),
        key=lambda a: a.sent,
    )
    refused = [a for a in attempts if a.status != 202]
    if not refused:
        return 0.0, "none"
    longest, start, seen_refusal = 0.0, since, False
    for attempt in attempts:
        if attempt.status != 202:
            seen_refusal = True
        elif seen_refusal:
            longest, seen_refusal = max(longest, attempt.sent - start), False
            start = attempt.sent
        else:
            start = attempt.sent
    if seen_refusal:  # never accepted again within the observed span
        longest = max(longest, attempts[-1].sent - start)
    first, last = (f(a.sent for a in refused) - since for f in (min, max))
    return longest, (
        f"{longest:.1f}s without a 202 ({outcomes(refused)} in all, to requests sent {first:.1f}s to "
        f"{last:.1f}s after the fault)"
    )


def group_of(deployment: Deployment) -> str:
    return f"{deployment.name}-group"


def wait_stored(stored: StoredView, ids: Collection[str], timeout: float) -> float | None:
    """Seconds until every event in ``ids`` (ledger keys) is stored, or None after ``timeout``. A store
    that does not answer (it is being restarted) is asked again."""
    began = time.monotonic()
    wanted = set(ids)
    while time.monotonic() - began < timeout:
        try:
            if stored.count() >= len(wanted) and wanted <= set(stored.keys()):
                return time.monotonic() - began
        except Exception:  # the database is still coming back
            pass
        time.sleep(0.25)
    return None


def finish(
    stack: Stack,
    deployment: Deployment,
    stored: StoredView,
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
        stack, stored, deployment.name, group_of(deployment), traffic.acked, catch_up_timeout
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
