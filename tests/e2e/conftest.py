from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.e2e.processes import Deployment, forget, prepare
from tests.stored import StoredView


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest, stack: Stack, unique_name: str, tmp_path: Path
) -> Iterator[Deployment]:
    """One isolated deployment on the store the test is parametrized with (``BOTH_STORES``), else MongoDB."""
    store = getattr(request, "param", "mongodb")
    deployment = Deployment(stack=stack, name=f"e2e_{unique_name}", logs=tmp_path, store=store)
    asyncio.run(prepare(deployment))
    try:
        yield deployment
    finally:
        deployment.stop_all()
        asyncio.run(forget(stack, deployment.name))


@pytest.fixture
def stored(deployment: Deployment) -> Iterator[StoredView]:
    view = deployment.stored()
    try:
        yield view
    finally:
        view.close()
