"""An unreachable database is StoreUnavailable (503, "retry") from every erasure-log call a route makes."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from activity_service.domain.erasure import Erasure
from activity_service.domain.errors import StoreUnavailable
from activity_service.infrastructure.mongo.erasures import MongoErasureLog
from activity_service.infrastructure.postgres.erasures import PostgresErasureLog

ERASURE = Erasure("er-1", "acme", "u1", datetime(2026, 3, 1, tzinfo=UTC))


class Unreachable:
    """A collection or a pool whose every call fails as a stopped server's does."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self._error

        return fail


def logs() -> list[Any]:
    mongo = MongoErasureLog(Unreachable(ServerSelectionTimeoutError("no servers")), None)  # type: ignore[arg-type]
    postgres = PostgresErasureLog(Unreachable(ConnectionRefusedError(111, "refused")))  # type: ignore[arg-type]
    return [mongo, postgres]


CALLS: list[Callable[[Any], Coroutine[Any, Any, Any]]] = [
    lambda log: log.add(ERASURE),
    lambda log: log.get("acme", "er-1"),
]


@pytest.mark.parametrize("log", logs(), ids=["mongodb", "postgresql"])
@pytest.mark.parametrize("call", CALLS, ids=["add", "get"])
async def test_an_unreachable_database_is_store_unavailable(log: Any, call: Any) -> None:
    with pytest.raises(StoreUnavailable):
        await call(log)
