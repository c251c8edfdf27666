"""Is the stack there? The local stack is shared: other sessions' fault tests stop and restart the broker
and the database, so the bench checks before it starts and waits for them when a phase trips over that."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from bench.errors import BenchError


async def _problem(kafka: str, mongo: str) -> str | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka, request_timeout_ms=5_000)
    try:
        await admin.start()
        await admin.list_topics()
    except Exception as exc:
        return (
            f"Kafka does not answer at {kafka} ({type(exc).__name__}: {exc}). Start the local stack with "
            "`make stack-up` (or set KAFKA_BOOTSTRAP_SERVERS), then run the bench again."
        )
    finally:
        await admin.close()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo, serverSelectionTimeoutMS=5_000)
    try:
        await client.admin.command("ping")
    except Exception as exc:
        return (
            f"the database does not answer at {mongo} ({type(exc).__name__}: {exc}). Start the local stack "
            "with `make stack-up` (or set MONGODB_URI), then run the bench again."
        )
    finally:
        await client.close()
    return None


def problem(kafka: str, mongo: str) -> str | None:
    """What is wrong with the stack, or None when both services answer."""
    return asyncio.run(_problem(kafka, mongo))


def preflight(kafka: str, mongo: str) -> None:
    """Fail fast, and say what to do, when the stack is not there."""
    found = problem(kafka, mongo)
    if found:
        raise BenchError(found)


def wait_until_up(kafka: str, mongo: str, timeout: float = 120) -> str | None:
    """Wait for both services to answer; the last problem when they still do not after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (found := problem(kafka, mongo)) is not None and time.monotonic() < deadline:
        time.sleep(2)
    return found
