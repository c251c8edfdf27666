"""The consumer process: reads the topic as a consumer group and stores every event.

SIGTERM or SIGINT: stop fetching, finish and commit the batch in hand, leave the group, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from activity_service.application.purge_expired import PurgeExpiredActivities
from activity_service.bootstrap import consumer_service
from activity_service.domain.delivery import Settled
from activity_service.infrastructure.settings import Settings
from activity_service.interfaces.collector import tune_gc

log = logging.getLogger("activity_service.consumer")


async def run_consumer(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Consume until SIGTERM or SIGINT (or until ``stop`` is set, when given)."""
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    metrics_server = _serve_metrics(settings)
    if stop.is_set():  # asked to stop while starting: nothing read, nothing to commit
        log.info("consumer stopped before it started")
        return
    async with consumer_service(settings, on_batch=_log_batch) as services:
        log.info(
            "consuming %s as group %s into %s",
            settings.kafka.topic,
            settings.kafka.consumer_group,
            services.store,
        )
        tune_gc()  # start-up is done: what it allocated is frozen
        chores = [
            asyncio.create_task(
                _periodically(
                    "erasures", services.erase.execute, settings.consumer.erasure_interval_seconds, stop
                )
            )
        ]
        if services.purge is not None:
            log.info(
                "the database cannot expire events itself: purging those older than %d days every %gs",
                settings.retention.days,
                settings.retention.purge_interval_seconds,
            )
            chores.append(
                asyncio.create_task(
                    _periodically(
                        "retention purge",
                        _purging(services.purge, settings),
                        settings.retention.purge_interval_seconds,
                        stop,
                    )
                )
            )
        try:
            await services.loop.run(stop)
        finally:
            for chore in chores:
                chore.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await chore
    if metrics_server is not None:
        metrics_server.shutdown()
    log.info("consumer stopped cleanly")


def _serve_metrics(settings: Settings) -> WSGIServer | None:
    """Prometheus endpoint on its own port (a background thread): the consumer has no HTTP server."""
    if not settings.metrics_enabled or settings.consumer.metrics_port == 0:
        return None
    host, port = settings.consumer.metrics_host, settings.consumer.metrics_port
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as exc:
        raise SystemExit(
            f"activity-service consumer: cannot serve metrics on {host}:{port} ({exc}). Another consumer on "
            "this host? Give each its own CONSUMER_METRICS_PORT, or 0 for none."
        ) from exc
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server


def _purging(purge: PurgeExpiredActivities, settings: Settings) -> Callable[[], Awaitable[object]]:
    async def purge_once() -> None:
        deleted = await purge.execute()
        log.info("retention: purged %d events older than %d days", deleted, settings.retention.days)

    return purge_once


async def _periodically(
    what: str, chore: Callable[[], Awaitable[object]], interval: float, stop: asyncio.Event
) -> None:
    """Beside consuming: a failed run is retried at the next interval, and consuming goes on."""
    while not stop.is_set():
        try:
            await chore()
        except Exception as exc:
            log.warning("%s failed, retrying in %gs: %s: %s", what, interval, type(exc).__name__, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


def _log_batch(report: Settled) -> None:
    log.debug(
        "batch: %d records, %d stored, %d duplicates, %d dead-lettered",
        report.records,
        report.inserted,
        report.duplicates,
        report.dead_lettered,
    )
