"""`activity-service api | consumer | replay | dlq replay`: the entry points."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from datetime import datetime

from pydantic import ValidationError

from activity_service.domain.times import from_iso
from activity_service.infrastructure.logging import configure_logging
from activity_service.infrastructure.observability.tracing import configure_tracing, shutdown_tracing
from activity_service.infrastructure.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="activity-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", help="interface to listen on (default: API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="port to listen on (default: API_PORT, 8000)")
    commands.add_parser("consumer", help="consume the topic and store events in the database")
    replay = commands.add_parser(
        "replay",
        help="re-read the topic (no consumer group, live consumers undisturbed) and store its events again; "
        "idempotent, safe to run any number of times",
    )
    replay.add_argument(
        "--from", dest="start", required=True, type=_time_or_earliest, help="ISO time or 'earliest'"
    )
    replay.add_argument(
        "--to", dest="end", type=_time, help="ISO time (default: the topic's end when started)"
    )
    dlq = commands.add_parser("dlq", help="dead-letter topic tools")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_commands.add_parser(
        "replay",
        help="re-drive every dead letter through validation and storage (after a fix); reports the rest",
    )
    args = parser.parse_args(argv)

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"activity-service: invalid settings (see .env.example):\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "api":
        return _serve_api(settings, args.host or settings.api.host, args.port or settings.api.port)
    if args.command == "consumer":
        return _consume(settings)
    if args.command == "replay":
        return _replay(settings, settings.kafka.topic, args.start, args.end, dead_letters=False)
    return _replay(settings, settings.kafka.dead_letter_topic, None, None, dead_letters=True)


def _serve_api(settings: Settings, host: str, port: int) -> int:
    from activity_service.interfaces.http.app import create_app
    from activity_service.interfaces.http.server import serve

    configure_tracing("activity-service-api")
    try:
        return serve(create_app(settings), settings, host, port)
    finally:
        shutdown_tracing()


def _consume(settings: Settings) -> int:
    # A SIGTERM while the process is still starting (an orchestrator scaling down a pod it just made)
    # is a request to stop, not a crash: noted here until the consumer's event loop takes the signals.
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    from activity_service.interfaces.worker.main import run_consumer

    configure_tracing("activity-service-consumer")
    try:
        asyncio.run(run_consumer(settings, stop))
    finally:
        shutdown_tracing()
    return 0


def _replay(
    settings: Settings, topic: str, start: datetime | None, end: datetime | None, *, dead_letters: bool
) -> int:
    from activity_service.interfaces.worker.replay import replay

    try:
        asyncio.run(replay(settings, topic, start=start, end=end, dead_letters=dead_letters))
    except Exception as exc:  # any failure of the broker or the database: said, and the exit status is 1
        print(
            f"activity-service: replay failed: {type(exc).__name__}: {exc}. Check KAFKA_BOOTSTRAP_SERVERS, "
            "KAFKA_TOPIC and the store (STORE, MONGODB_URI or POSTGRES_DSN; locally: make stack-up); "
            "replaying again is safe.",
            file=sys.stderr,
        )
        return 1
    return 0


def _time(value: str) -> datetime:
    try:
        return from_iso(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None


def _time_or_earliest(value: str) -> datetime | None:
    return None if value == "earliest" else _time(value)


if __name__ == "__main__":
    sys.exit(main())
