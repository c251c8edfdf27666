from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from activity_client import Client, Refusal
from tests.fake_api import API_KEY, FakeApi

# Fast settings: tests wait on conditions, never on these being short.
FAST: dict[str, Any] = {"flush_interval": 0.02, "backoff_base": 0.01, "max_backoff": 0.05}


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi().start()
    yield server
    server.stop()


class Refusals(list[Refusal]):
    """An on_error callback that keeps what it is given."""

    def __call__(self, refusal: Refusal) -> None:
        self.append(refusal)


@pytest.fixture
def refusals() -> Refusals:
    return Refusals()


def make_client(api: FakeApi, **options: Any) -> Client:
    return Client(api.url, API_KEY, **{**FAST, **options})


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Polls ``predicate`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
