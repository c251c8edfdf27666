"""TokenBuckets against a real redis-server: one budget shared by every process, and a per-process
budget while Redis does not answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from activity_service.infrastructure.rate_limit import TokenBuckets
from tests.redis_server import redis_server


@pytest.fixture(scope="module")
def redis_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as uri:
        yield uri


async def test_replicas_sharing_redis_spend_one_budget(redis_uri: str) -> None:
    first, second = TokenBuckets(0.01, 5, redis_uri), TokenBuckets(0.01, 5, redis_uri)
    bucket = f"key:{uuid.uuid4().hex}"
    try:
        verdicts = [await (first if i % 2 else second).spend(bucket) for i in range(6)]
        assert [v.allowed for v in verdicts] == [True] * 5 + [False]
        assert [v.remaining for v in verdicts] == [4, 3, 2, 1, 0, 0]
        assert verdicts[-1].retry_after == pytest.approx(100, abs=1)
        assert (await first.spend(f"key:{uuid.uuid4().hex}", 5)).allowed, "another bucket is untouched"
        assert not (await second.spend(bucket, 1)).allowed
    finally:
        await first.close()
        await second.close()


async def test_while_redis_does_not_answer_each_process_limits_on_its_own(tmp_path: Path) -> None:
    with redis_server(tmp_path) as uri:
        pass  # started and stopped: nothing listens on its port any more
    buckets = TokenBuckets(0.01, 2, uri)
    try:
        verdicts = [await buckets.spend("key:a") for _ in range(3)]
        assert [v.allowed for v in verdicts] == [True, True, False]
    finally:
        await buckets.close()
