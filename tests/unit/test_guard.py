"""IngestGuard in front of a tiny ASGI app that echoes the size of the body it got."""

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
from starlette.types import Receive, Scope, Send

from activity_service.interfaces.http.guard import AcceptQueue, IngestGuard, is_json


async def echo_size(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def client() -> httpx.AsyncClient:
    app = IngestGuard(echo_size, limits={"/in": 100}, max_concurrent=8)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


JSON = {"content-type": "application/json"}


async def test_bodies_within_the_limit_pass_untouched() -> None:
    async with client() as http:
        response = await http.post("/in", content=b"x" * 100, headers=JSON)
    assert (response.status_code, response.text) == (200, "100")


async def test_a_declared_length_over_the_limit_is_refused() -> None:
    async with client() as http:
        response = await http.post("/in", content=b"x" * 101, headers=JSON)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["limit"] == 100


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


async def test_a_chunked_body_is_counted_and_replayed() -> None:
    async with client() as http:
        small = await http.post("/in", content=chunks(3, 30), headers=JSON)
        large = await http.post("/in", content=chunks(5, 30), headers=JSON)
    assert (small.status_code, small.text) == (200, "90")
    assert large.status_code == 413


async def test_non_json_bodies_are_unsupported() -> None:
    async with client() as http:
        form = await http.post("/in", data={"a": "b"})
        missing = await http.post("/in", content=b"{}")
    assert form.status_code == missing.status_code == 415


async def test_other_paths_and_methods_are_not_guarded() -> None:
    async with client() as http:
        assert (await http.post("/other", content=b"x" * 500)).status_code == 200
        assert (await http.put("/in", content=b"x" * 500)).status_code == 200


def test_json_media_types() -> None:
    assert is_json("application/json")
    assert is_json("Application/JSON; charset=utf-8")
    assert is_json("application/problem+json")
    assert not is_json("text/plain")
    assert not is_json("")


async def test_beyond_the_concurrency_bound_ingest_is_refused_at_once() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await release.wait()
        await echo_size(scope, receive, send)

    app = IngestGuard(slow, limits={"/in": 100}, max_concurrent=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        first = asyncio.create_task(http.post("/in", content=b"{}", headers=JSON))
        await started.wait()
        refused = await http.post("/in", content=b"{}", headers=JSON)
        release.set()
        assert (await first).status_code == 200
        assert (await http.post("/in", content=b"{}", headers=JSON)).status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert app.in_progress == 0


def test_the_accept_queue_counts_connections_the_server_has_not_accepted_yet() -> None:
    queue = AcceptQueue()
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listening:
        assert queue.length() == 0  # not watched yet: nothing to report
        queue.watch(listening)
        waiting = [socket.create_connection(listening.getsockname()) for _ in range(5)]
        try:
            assert queue.length() == 5
            accepted, _ = listening.accept()
            accepted.close()
            assert queue.length() == 4
        finally:
            for connection in waiting:
                connection.close()


async def test_while_connections_queue_up_to_be_accepted_ingest_is_refused_at_once() -> None:
    class Queue(AcceptQueue):
        waiting = 0

        def length(self) -> int:
            return self.waiting

    queue = Queue()
    app = IngestGuard(
        echo_size, limits={"/in": 100}, max_concurrent=8, accept_queue=queue, max_accept_queue=3
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        queue.waiting = 3
        assert (await http.post("/in", content=b"{}", headers=JSON)).status_code == 200
        queue.waiting = 4
        refused = await http.post("/in", content=b"{}", headers=JSON)
        assert (await http.get("/health")).status_code == 200  # only ingest is shed
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"


async def test_a_body_still_arriving_holds_no_slot() -> None:
    """max_concurrent=1, and one client sends its body slowly: another client's POST still passes."""
    arrived = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"a": '
        await arrived.wait()
        yield b"1}"

    app = IngestGuard(echo_size, limits={"/in": 100}, max_concurrent=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        slow = asyncio.create_task(http.post("/in", content=slow_body(), headers=JSON))
        await asyncio.sleep(0.05)  # the slow request is in the guard, reading
        other = await http.post("/in", content=b"{}", headers=JSON)
        arrived.set()
        assert (await slow).text == "8"
    assert (other.status_code, other.text) == (200, "2")
    assert app.in_progress == app.body_bytes == 0


async def test_the_bodies_of_requests_alive_are_bounded_in_bytes() -> None:
    release = asyncio.Event()

    async def held(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await echo_size(scope, receive, send)

    app = IngestGuard(held, limits={"/in": 1000}, max_concurrent=8, max_body_bytes=1500)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        first = asyncio.create_task(http.post("/in", content=b"x" * 1000, headers=JSON))
        await asyncio.sleep(0.05)
        refused = await http.post("/in", content=b"x" * 600, headers=JSON)  # 1000 + 600 > 1500
        small = asyncio.create_task(http.post("/in", content=b"x" * 400, headers=JSON))
        await asyncio.sleep(0.05)
        release.set()
        assert (await first).status_code == (await small).status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert app.body_bytes == 0
