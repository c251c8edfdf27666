"""Faults of the API process: a SIGTERM and a SIGKILL under load, and more load than it can take."""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.conftest import Stack
from tests.e2e.processes import Deployment
from tests.faults.harness import GRACE, census, finish, group_of, outcomes, settle, window
from tests.faults.ledger import Report, assert_exact, wait_caught_up
from tests.faults.overload import Flood, Prober, RssSampler, rss_kib
from tests.faults.traffic import Traffic
from tests.stored import StoredView

FLOOD_SECONDS = 3.0
OVERLOAD_DEADLINE = 1.0


@pytest.mark.scenario("4 API SIGTERM")
def test_api_sigterm_under_load_completes_or_fails_in_flight_requests_and_loses_nothing(
    deployment: Deployment, stack: Stack, stored: StoredView, report: Report, rng: random.Random
) -> None:
    """Two API replicas behind a (client-side) balancer; one gets SIGTERM while it has requests in flight.
    Those complete with 202 (and are stored) or fail (and the client retries them on the other one)."""
    deployment.start_consumer()
    doomed, url_a = deployment.start_api()
    _, url_b = deployment.start_api()
    traffic = Traffic([url_a, url_b], rate=4000, batch_size=200, workers=6).start()
    time.sleep(rng.uniform(2, 4))
    # SIGTERM while it has requests in flight: two if that comes within 5 s, else one.
    in_flight_at_signal = signal_with_requests_in_flight(traffic, url_a)
    signalled = time.monotonic()
    doomed.send_signal(signal.SIGTERM)
    code = doomed.wait(30)
    exited = time.monotonic() - signalled
    traffic.set_urls([url_b])  # the balancer takes the stopped replica out
    time.sleep(2)
    catch = finish(stack, deployment, stored, traffic, report)

    at_a = [a for a in traffic.attempts if a.url == url_a]
    in_flight = [a for a in at_a if a.sent < signalled < a.answered]
    later = [a for a in at_a if a.sent >= signalled]
    report.recovery = f"{exited:.1f}s (SIGTERM -> process exited {code})"
    report.details.append(
        f"{in_flight_at_signal} requests in flight at SIGTERM: {outcomes(in_flight)}; "
        f"sent to it afterwards: {outcomes(later)}"
    )
    settle(traffic, catch)
    assert_exact(catch.ledger)
    # uvicorn re-raises the SIGTERM once it has shut down gracefully, so -15 is a clean exit too.
    assert code in (0, -signal.SIGTERM)
    assert (
        "Application shutdown complete"
        in (deployment.logs / f"api-{url_a.rsplit(':', 1)[1]}.log").read_text()
    )
    assert exited < 15, "the API took longer to stop than its graceful shutdown allows"
    assert in_flight, "no request was in flight at the SIGTERM, so the scenario proved nothing"
    assert {a.status for a in in_flight} <= {202, 503, None}, outcomes(in_flight)
    assert {a.status for a in at_a} <= {202, 503, None}, outcomes(at_a)


def signal_with_requests_in_flight(traffic: Traffic, url: str) -> int:
    """Waits (at most 10 s) until ``url`` has two requests in flight (one after 5 s); returns how many."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if traffic.in_flight(url) >= (2 if time.monotonic() < deadline - 5 else 1):
            break
        time.sleep(0.001)
    return traffic.in_flight(url)


@pytest.mark.scenario("4b API SIGKILL")
def test_api_sigkilled_with_requests_in_flight_every_202_is_stored_and_the_rest_is_resent(
    deployment: Deployment, stack: Stack, stored: StoredView, report: Report, rng: random.Random
) -> None:
    """Two replicas; one is SIGKILLed (the OOM killer, a node lost) while it has requests in flight: no
    graceful anything. Its clients get no answer for those, and resend them (same ids) to the other;
    every 202 a client did receive, from either, is stored, once.

    The client is Traffic, not the Python SDK, though this is the resend the SDK exists for: what is
    asserted is per attempt (the requests in flight at the kill, each answered 202 or not at all; the
    unanswered ones resent to the other replica and acknowledged there; the 503 window), and the SDK
    neither reports its attempts nor fails over from one base URL to another. tests/e2e/test_sdk.py
    SIGKILLs an API under the SDK (restarted at the same address) and checks the stored ids instead."""
    deployment.start_consumer()
    doomed, url_a = deployment.start_api()
    _, url_b = deployment.start_api()
    traffic = Traffic([url_a, url_b], rate=4000, batch_size=200, workers=6).start()
    time.sleep(rng.uniform(2, 4))
    in_flight_at_signal = signal_with_requests_in_flight(traffic, url_a)
    killed = time.monotonic()
    doomed.send_signal(signal.SIGKILL)
    code = doomed.wait(10)
    traffic.set_urls([url_b])  # the balancer takes the dead replica out
    time.sleep(2)
    catch = finish(stack, deployment, stored, traffic, report)

    at_a = [a for a in traffic.attempts if a.url == url_a]
    in_flight = [a for a in at_a if a.sent < killed < a.answered]
    unanswered = {a.batch for a in at_a if a.status is None}
    resent = [a for a in traffic.attempts if a.batch in unanswered and a.url == url_b]
    acked_by_a = sum(1 for a in at_a if a.status == 202)
    report.recovery = f"{len(unanswered)} unanswered batches resent, same ids ({len(resent)} resends)"
    report.window = window(traffic, killed)[1]
    report.details.append(
        f"{in_flight_at_signal} requests in flight at SIGKILL: {outcomes(in_flight)}; {acked_by_a} batches "
        f"acknowledged by it before; exit {code}"
    )
    settle(traffic, catch)
    assert_exact(catch.ledger)
    assert code == -signal.SIGKILL
    assert in_flight, "no request was in flight at the SIGKILL, so the scenario proved nothing"
    assert {a.status for a in in_flight} <= {202, None}, outcomes(in_flight)
    assert unanswered, "no request went unanswered: the kill did not land on one in flight"
    assert all(b in {a.batch for a in traffic.attempts if a.status == 202} for b in unanswered)


@pytest.mark.scenario("6 overload 3x capacity")
def test_overload_at_three_times_capacity_sheds_promptly_with_bounded_memory(
    deployment: Deployment, stack: Stack, stored: StoredView, report: Report
) -> None:
    """Capacity is measured first (closed loop: eight clients, batches of 20, for 2 s); then three times
    that rate is offered for 3 s, open loop, as from many clients. Rate limits are set out of reach: what
    is tested is the API's own protection, which many clients with many keys would meet. Every answer
    must be a 202, 429 or 503 within the publish deadline (1 s here, plus 1 s of grace); a client waits
    at most 5 s more, then gives up, and resends later with the same ids."""
    deployment.start_consumer()
    api, base_url = deployment.start_api(INGEST_PUBLISH_TIMEOUT_SECONDS=str(OVERLOAD_DEADLINE))
    flood = Flood(base_url, batch_size=20, timeout=OVERLOAD_DEADLINE + GRACE + 5)
    capacity = flood.calibrate(seconds=2, concurrency=8)
    calibration = len(flood.attempts)
    baseline = rss_kib(api.pid)
    began = time.monotonic()
    with RssSampler(api.pid) as rss, Prober(base_url, f"{flood.prefix}-probe") as prober:
        flood.run(rate=3 * capacity, seconds=FLOOD_SECONDS)
        over = began + FLOOD_SECONDS
        while prober.prompt_since(over) is None and time.monotonic() - over < 60:
            time.sleep(0.1)
    recovered = prober.prompt_since(over)
    attempts = flood.attempts[calibration:]
    offered = len(attempts) * flood.batch_size / FLOOD_SECONDS
    flood.resend_refused(timeout=60)
    acked = flood.acked | prober.acked
    catch = wait_caught_up(stack, stored, deployment.name, group_of(deployment), acked, timeout=150)
    report.ledger = catch.ledger
    report.details.append(census(stack, deployment.name))
    slowest = max(a.latency for a in attempts)
    late = [a for a in attempts if a.status is None or a.latency > OVERLOAD_DEADLINE + GRACE]
    growth = (max(rss.samples) - baseline) / 1024
    report.recovery = "never" if recovered is None else f"{recovered:.1f}s (flood over -> 202 within 1 s)"
    report.details.append(
        f"capacity {capacity:.0f} events/s, offered {offered:.0f}/s for {FLOOD_SECONDS:.0f}s; "
        f"answers {outcomes(attempts)}, {len(late)} late; slowest {slowest:.1f}s; API RSS +{growth:.0f} MiB"
    )
    report.details.append(
        f"prober (the SDK): {len(prober.acked)} events acknowledged, {len(prober.prompt_answers)} probes "
        f"prompt, {prober.stats.retries if prober.stats else '?'} resends, {len(prober.refused)} refused"
    )
    assert not flood.anomalies, flood.anomalies[:5]
    assert not prober.refused, prober.refused[:5]
    assert not flood.refused, f"{len(flood.refused)} batches never acknowledged, even resent after the flood"
    assert catch.complete
    assert_exact(catch.ledger)
    assert growth < 100, f"API memory grew by {growth:.0f} MiB under overload"
    assert {a.status for a in attempts} <= {202, 429, 503}, outcomes(attempts)
    assert not late, (
        f"{len(late)} of {len(attempts)} requests were answered after the publish deadline "
        f"({OVERLOAD_DEADLINE:g}s + {GRACE:g}s of grace), the slowest in {slowest:.1f}s: the API queues "
        "the excess instead of refusing it at once"
    )
