from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from tests.conftest import Stack
from tests.e2e.processes import Deployment


@pytest.fixture
def deployment(stack: Stack, unique_name: str, tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(stack=stack, name=f"e2e_{unique_name}", logs=tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop_all()
        asyncio.run(_forget(stack, deployment.name))


async def _forget(stack: Stack, name: str) -> None:
    """Drop what the deployment created, so the local broker does not collect thousands of partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        await admin.delete_topics([t for t in (name, f"{name}.dlq") if t in existing])
    finally:
        await admin.close()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_uri)
    try:
        await client.drop_database(name)
    finally:
        await client.close()
