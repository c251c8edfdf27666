"""`activity-service api | consumer`: the entry points of the two processes."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from activity_service.infrastructure.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="activity-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", help="interface to listen on (default: API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="port to listen on (default: API_PORT, 8000)")
    commands.add_parser("consumer", help="consume the topic and store events in the database")
    args = parser.parse_args(argv)

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"activity-service: invalid settings (see .env.example):\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if args.command == "api":
        return _serve_api(settings, args.host or settings.api.host, args.port or settings.api.port)
    return _consume(settings)


def _serve_api(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from activity_service.interfaces.http.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,  # the client address comes from the socket, never from a header
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def _consume(settings: Settings) -> int:
    from activity_service.interfaces.worker.main import run_consumer

    asyncio.run(run_consumer(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
