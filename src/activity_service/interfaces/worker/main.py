"""The consumer process: reads the topic as a consumer group and stores every event.

SIGTERM or SIGINT: stop fetching, finish and commit the batch in hand, leave the group, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from activity_service.bootstrap import consumer_service
from activity_service.infrastructure.kafka.consumer import BatchReport
from activity_service.infrastructure.settings import Settings

log = logging.getLogger("activity_service.consumer")


async def run_consumer(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with consumer_service(settings, on_batch=_log_batch) as consumer:
        log.info(
            "consuming %s as group %s into %s.%s",
            settings.kafka.topic,
            settings.kafka.consumer_group,
            settings.mongodb.database,
            settings.mongodb.collection,
        )
        await consumer.run(stop)
    log.info("consumer stopped cleanly")


def _log_batch(report: BatchReport) -> None:
    log.debug(
        "batch: %d records, %d stored, %d duplicates, %d dead-lettered",
        report.records,
        report.inserted,
        report.duplicates,
        report.dead_lettered,
    )
