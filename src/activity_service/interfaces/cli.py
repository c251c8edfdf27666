"""`activity-service api | consumer | replay | dlq replay`: the entry points."""

from __future__ import annotations

# Nothing but signal and sys before the signals are taken: importing the rest takes a second or more
# on a loaded machine, and a SIGTERM meanwhile (an orchestrator scaling down a pod it just made) is a
# request to stop, not a crash.
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence
    from datetime import datetime
    from types import FrameType

    import uvicorn

    from activity_service.infrastructure.settings import Settings


class _StopRequests:
    """SIGTERM and SIGINT noted from the first moment, until the process's own handling takes them."""

    def __init__(self) -> None:
        self.requested = False
        self.event: asyncio.Event | None = None  # the consumer's stop
        self.server: uvicorn.Server | None = None  # the API's server, before it takes the signals
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.event is not None:
            self.event.set()
        if self.server is not None:
            self.server.should_exit = True

    def release(self) -> None:
        """Back to Python's own handling (the one-off commands: Ctrl-C interrupts them)."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def hand_to(self, server: uvicorn.Server) -> None:
        """Stop ``server`` at once if asked already, or when asked before it takes the signals itself."""
        self.server = server
        if self.requested:
            server.should_exit = True


def main(argv: Sequence[str] | None = None) -> int:
    stops = _StopRequests()
    import argparse

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
    if args.command not in ("api", "consumer"):
        stops.release()

    from pydantic import ValidationError

    from activity_service.infrastructure.logging import configure_logging
    from activity_service.infrastructure.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"activity-service: invalid settings (see .env.example):\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if stops.requested:
        print(f"activity-service {args.command}: asked to stop while starting; stopped", file=sys.stderr)
        return 0
    if args.command == "api":
        return _serve_api(settings, args.host or settings.api.host, args.port or settings.api.port, stops)
    if args.command == "consumer":
        return _consume(settings, stops)
    if args.command == "replay":
        return _replay(settings, settings.kafka.topic, args.start, args.end, dead_letters=False)
    return _replay(settings, settings.kafka.dead_letter_topic, None, None, dead_letters=True)


def _serve_api(settings: Settings, host: str, port: int, stops: _StopRequests) -> int:
    from activity_service.infrastructure.observability.tracing import configure_tracing, shutdown_tracing
    from activity_service.interfaces.http.app import create_app
    from activity_service.interfaces.http.server import serve

    configure_tracing("activity-service-api")
    try:
        app = create_app(settings)
        if stops.requested:  # while the app was being built
            return 0
        return serve(app, settings, host, port, on_server=stops.hand_to)
    finally:
        shutdown_tracing()


def _consume(settings: Settings, stops: _StopRequests) -> int:
    import asyncio

    # Noted until the consumer's event loop takes the signals (run_consumer).
    stop = stops.event = asyncio.Event()
    if stops.requested:
        stop.set()
    from activity_service.infrastructure.observability.tracing import configure_tracing, shutdown_tracing
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
    import asyncio

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
    import argparse

    from activity_service.domain.times import from_iso

    try:
        return from_iso(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from None


def _time_or_earliest(value: str) -> datetime | None:
    return None if value == "earliest" else _time(value)


if __name__ == "__main__":
    sys.exit(main())
