"""AsyncClient keeps Client's contract: the same batching, flush, retries, refusals, queue policies, spool."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from activity_client import AsyncClient, Client, QueueFull
from tests.conftest import FAST, Refusals, wait_until
from tests.fake_api import API_KEY, FakeApi


def _client(api: FakeApi, **options: Any) -> AsyncClient:
    return AsyncClient(api.url, API_KEY, **{**FAST, **options})


def test_batches_by_size_then_flushes_the_rest(api: FakeApi) -> None:
    async def main() -> list[str]:
        async with _client(api, max_batch_size=100, flush_interval=30, concurrency=1) as client:
            ids = [await client.track("u1", "page_view", {"i": i}) for i in range(250)]
            assert await client.flush(10)
            assert client.stats.delivered == 250
            return ids

    ids = asyncio.run(main())
    assert set(api.stored) == set(ids)
    assert [len(s.ids) for s in api.seen] == [100, 100, 50]
    assert all(s.gzipped for s in api.seen)


def test_a_partial_batch_goes_after_the_interval(api: FakeApi) -> None:
    async def main() -> None:
        async with _client(api, flush_interval=0.05) as client:
            await client.track("u1", "login")
            # no flush: the interval alone must send it (the server runs in a thread of its own)
            assert await asyncio.to_thread(api.wait_stored, 1)

    asyncio.run(asyncio.wait_for(main(), 20))


def test_retries_keep_the_ids_and_honour_retry_after(api: FakeApi) -> None:
    api.fail_next(1, 503, retry_after="1")
    api.fail_next(1, 429)

    async def main() -> list[str]:
        async with _client(api, concurrency=1) as client:
            ids = [await client.track("u1", "login") for _ in range(5)]
            assert await client.flush(10)
            assert client.stats.retries == 2
            return ids

    ids = asyncio.run(main())
    assert [s.status for s in api.seen] == [503, 429, 202]
    assert all(s.ids == ids for s in api.seen)
    assert api.seen[1].at - api.seen[0].at >= 0.99


def test_refusals_reach_on_error(api: FakeApi, refusals: Refusals) -> None:
    async def main() -> tuple[str, str]:
        async with _client(api, on_error=refusals) as client:
            good, bad = await client.track("u1", "login"), await client.track("u1", "invalid")
            assert await client.flush(10)
            return good, bad

    good, bad = asyncio.run(main())
    assert list(api.stored) == [good]
    assert [(r.event_id, r.reason) for r in refusals] == [(bad, "rejected")]


def test_gzip_fallback_and_413_split() -> None:
    api = FakeApi(accept_gzip=False, max_items=10).start()

    async def main() -> list[str]:
        async with _client(api, max_batch_size=40, concurrency=1) as client:
            ids = [await client.track("u1", "login") for _ in range(40)]
            assert await client.flush(10)
            assert not client.stats.gzip
            return ids

    try:
        ids = asyncio.run(main())
        assert set(api.stored) == set(ids)
        assert api.seen[0].status == 400 and 413 in [s.status for s in api.seen]
    finally:
        api.stop()


def test_a_full_queue_raises_or_drops(api: FakeApi) -> None:
    api.hold()

    async def main(policy: str) -> AsyncClient:
        client = _client(api, max_queue_size=100, concurrency=1, on_full=policy, block_timeout=0.2)
        for _ in range(100):
            await client.track("u1", "login")
        assert await asyncio.to_thread(wait_until, lambda: client.stats.in_flight == 100)
        if policy == "drop":
            await client.track("u1", "login")
            assert client.stats.dropped == 1
        else:
            with pytest.raises(QueueFull):
                await client.track("u1", "login")
            assert client.stats.full == 1
        await client.close(timeout=0)
        return client

    for policy in ("raise", "drop", "block"):
        asyncio.run(main(policy))
    api.release()


def test_it_adopts_a_spool_left_by_a_threaded_client(api: FakeApi, tmp_path: Path) -> None:
    api.hold()
    first = Client(api.url, API_KEY, spool_dir=tmp_path, **FAST)
    ids = [first.track("u1", "login") for _ in range(30)]
    first.close(timeout=0.1)
    api.release()

    async def main() -> None:
        async with _client(api, spool_dir=tmp_path) as client:
            assert client.stats.adopted == 30
            assert await client.flush(10)

    asyncio.run(main())
    assert set(ids) <= set(api.stored)
    assert list(tmp_path.iterdir()) == []
