"""Outages and crashes of the shared broker and database, under load, on each store. Each is kept short
(other engineers use the same stack) and the service is always started again, whatever happens."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import httpx
import pytest

from tests.conftest import Stack
from tests.e2e.processes import BOTH_STORES, Deployment
from tests.faults.control import StackControl
from tests.faults.harness import (
    GRACE,
    PUBLISH_DEADLINE,
    crash,
    finish,
    outage,
    outcomes,
    settle,
    wait_stored,
    window,
)
from tests.faults.ledger import Report, assert_both_tenants, assert_exact
from tests.faults.traffic import TWO_TENANTS, Traffic, api_keys
from tests.stored import StoredView

DOWN_SECONDS = 6


@pytest.mark.scenario("2 Kafka broker outage")
def test_broker_outage_answers_503_while_down_and_202_within_seconds_of_its_return(
    deployment: Deployment, stack: Stack, stored: StoredView, report: Report
) -> None:
    deployment.start_consumer()
    _, base_url = deployment.start_api(INGEST_PUBLISH_TIMEOUT_SECONDS=str(PUBLISH_DEADLINE))
    traffic = Traffic([base_url], rate=300, workers=4).start()
    time.sleep(3)
    with outage(stack, "kafka") as moments:
        time.sleep(DOWN_SECONDS)
    deadline = time.monotonic() + 30
    while (first := traffic.first_202_sent_after(moments["up"])) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # steady load after the return
    catch = finish(stack, deployment, stored, traffic, report)

    during = traffic.between(moments["down"], moments["starting"])
    slowest = max((a.latency for a in during), default=0.0)
    report.recovery = (
        "never" if first is None else f"{first.answered - moments['up']:.1f}s (broker back -> 202)"
    )
    report.window = window(traffic, moments["stopping"])[1]
    report.details.append(
        f"broker down {moments['starting'] - moments['down']:.0f}s, restart took "
        f"{moments['up'] - moments['starting']:.0f}s; answers while down {outcomes(during)}, "
        f"slowest {slowest:.1f}s"
    )
    settle(traffic, catch)
    assert_exact(catch.ledger)
    assert during, "no request was answered while the broker was down"
    assert {a.status for a in during} == {503}, f"answers while the broker was down: {outcomes(during)}"
    assert all(a.retry_after for a in during), "a 503 without Retry-After"
    assert slowest <= PUBLISH_DEADLINE + GRACE
    assert first is not None and first.answered - moments["up"] <= 10


LIST, ONE, STATUS = "GET /api/activities", "GET /api/activities/{id}", "GET /api/activities/{id}/status"


def read_statuses(base_url: str, event_id: str, headers: dict[str, str]) -> dict[str, str]:
    """What each read endpoint answers (its status, and whether it carried Retry-After), asked at once
    and each on its own connection, so the outage need not last longer for them."""
    paths = {
        LIST: "/api/activities",
        ONE: f"/api/activities/{event_id}",
        STATUS: f"/api/activities/{event_id}/status",
    }

    def ask(path: str) -> str:
        try:
            response = httpx.get(f"{base_url}{path}", headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return f"{response.status_code}{'+Retry-After' if 'retry-after' in response.headers else ''}"

    with ThreadPoolExecutor(len(paths)) as pool:
        return dict(zip(paths, pool.map(ask, paths.values()), strict=True))


def database_fault(
    deployment: Deployment,
    stored: StoredView,
    report: Report,
    fault: Callable[[], AbstractContextManager[dict[str, float]]],
    what: str,
) -> None:
    """Steady load from two tenants writing the same ids; the database goes away for DOWN_SECONDS
    (``fault``) and comes back. Ingest must not notice, the consumer retries and catches up, reads answer
    503 with Retry-After meanwhile; each tenant ends with exactly its own events."""
    # Operations give up on the database after 2 s (5 s by default), so that a 6 s outage surely makes the
    # consumer's writes fail and be retried, not merely wait.
    timeout = {"MONGODB_TIMEOUT_MS": "2000", "POSTGRES_TIMEOUT_MS": "2000"}
    deployment.extra_env = {**deployment.extra_env, **api_keys(TWO_TENANTS)}
    consumer = deployment.start_consumer(**timeout)
    _, base_url = deployment.start_api(**timeout)
    traffic = Traffic([base_url], rate=300, keys=TWO_TENANTS).start()
    time.sleep(3)
    tenant, some_id = next(iter(traffic.acked)).split("/", 1)
    with fault() as moments:
        time.sleep(1)
        reads = read_statuses(base_url, some_id, traffic.key_of(tenant).headers)
        time.sleep(max(0.0, moments["down"] + DOWN_SECONDS - time.monotonic()))
    backlog = set(traffic.acked)
    cleared = wait_stored(stored, backlog, timeout=90)
    catch = finish(deployment.stack, deployment, stored, traffic, report)

    during = traffic.between(moments["down"], moments["starting"])
    retried = sum(
        p.read_text(errors="replace").count("retrying") for p in deployment.logs.glob("consumer-*.log")
    )
    report.recovery = "never" if cleared is None else f"{cleared:.1f}s (database back -> backlog stored)"
    report.window = window(traffic, moments["stopping"])[1]
    report.details.append(
        f"{deployment.store} {what} {moments['starting'] - moments['down']:.0f}s, restart took "
        f"{moments['up'] - moments['starting']:.1f}s; ingest while down {outcomes(during)}; "
        f"consumer retries logged {retried}; reads while down: list {reads[LIST]}, one {reads[ONE]}, "
        f"status {reads[STATUS]}"
    )
    settle(traffic, catch)
    assert_exact(catch.ledger)
    assert_both_tenants(catch.ledger.tenants)
    assert consumer.poll() is None, "the consumer exited during the outage"
    assert retried > 0, "the consumer never logged a retry, so the outage was not exercised"
    assert during and {a.status for a in during} == {202}, "ingest must not depend on the database"
    # Reads cannot work without the database; they must say so with a 503 and Retry-After, as the README
    # promises, not fail with a 500.
    assert all(r == "503+Retry-After" for r in reads.values()), f"reads while the database was down: {reads}"


@pytest.mark.scenario("3 database outage")
@BOTH_STORES
def test_database_outage_the_consumer_retries_and_catches_up(
    deployment: Deployment, stack: Stack, stored: StoredView, report: Report
) -> None:
    report.scenario = f"3 database outage ({deployment.store})"
    database_fault(
        deployment, stored, report, lambda: outage(stack, deployment.store_service), "stopped (SIGTERM)"
    )


@pytest.mark.scenario("3b database SIGKILL")
@BOTH_STORES
def test_database_crash_under_load_the_consumer_retries_and_catches_up_exactly_once(
    deployment: Deployment, control: StackControl, stored: StoredView, report: Report
) -> None:
    """As a crash (power, OOM killer) leaves it: no shutdown, no checkpoint; PostgreSQL recovers from its
    write-ahead log, FerretDB's SQLite from its journal. What was acknowledged to the consumer must be
    there, what was not is written again, and nothing twice."""
    report.scenario = f"3b database SIGKILL ({deployment.store})"
    database_fault(
        deployment, stored, report, lambda: crash(control, deployment.store_service), "killed (SIGKILL)"
    )
