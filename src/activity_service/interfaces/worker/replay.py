"""`activity-service replay` and `activity-service dlq replay`: store again what a topic holds."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from activity_service.application.replay_activities import ReplayReport
from activity_service.bootstrap import replay_service
from activity_service.domain.retention import retention_cutoff
from activity_service.infrastructure.settings import Settings

PROGRESS_EVERY_SECONDS = 2.0


async def replay(
    settings: Settings, topic: str, *, start: datetime | None, end: datetime | None, dead_letters: bool
) -> ReplayReport:
    """Prints progress to stderr and a one-line summary to stdout; returns the report."""
    label = "dlq replay" if dead_letters else "replay"
    began = time.monotonic()
    last = [began]

    def progress(report: ReplayReport) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_SECONDS:
            last[0] = now
            print(f"[{label}] {report.summary()} ...", file=sys.stderr, flush=True)

    async with replay_service(settings) as services:
        print(
            f"[{label}] reading {topic} from {start.isoformat() if start else 'the beginning'} "
            f"to {end.isoformat() if end else 'its current end'} into {services.store}",
            file=sys.stderr,
            flush=True,
        )
        report = await services.replay.execute(
            services.read(topic, start=start, end=end),
            forget_dead_letters=dead_letters,
            expired_before=retention_cutoff(datetime.now(UTC), settings.retention.days),
            on_progress=progress,
        )
    for (tenant, event_id), reason in list(report.rejected.items())[:20]:
        print(f"[{label}] refused by the database: {tenant}/{event_id}: {reason}", file=sys.stderr)
    for reason in report.unreadable[:20]:
        print(f"[{label}] unreadable: {reason}", file=sys.stderr)
    print(f"[{label}] done in {time.monotonic() - began:.1f}s: {report.summary()}", flush=True)
    return report
