from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.e2e.processes import Deployment, forget


@pytest.fixture
def deployment(stack: Stack, unique_name: str, tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(stack=stack, name=f"e2e_{unique_name}", logs=tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop_all()
        asyncio.run(forget(stack, deployment.name))
