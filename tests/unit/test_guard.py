"""IngestGuard in front of a tiny ASGI app that echoes the size of the body it got."""

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator

import httpx
from starlette.types import Receive, Scope, Send

from activity_service.interfaces.http.bodies import media_type
from activity_service.interfaces.http.guard import AcceptQueue, IngestGuard


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


def test_json_media_types_and_text_plain_in_utf8() -> None:
    assert media_type("application/json") == "json"
    assert media_type("Application/JSON; charset=utf-8") == "json"
    assert media_type("application/problem+json") == "json"
    # What navigator.sendBeacon sends for a string (the guard takes it only from a publishable key).
    assert media_type("text/plain;charset=UTF-8") == media_type("text/plain") == "text"
    assert media_type("text/plain; charset=iso-8859-1") is None
    assert media_type("application/x-www-form-urlencoded") is None
    assert media_type("") is None


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


async def test_a_compressed_body_reserves_its_whole_limit_and_reaches_the_app_inflated() -> None:
    release = asyncio.Event()

    async def held(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        headers = dict(scope["headers"])
        assert b"content-encoding" not in headers and headers[b"content-type"] == b"application/json"
        assert headers[b"content-length"] == b"900"
        await echo_size(scope, receive, send)

    app = IngestGuard(held, limits={"/in": 1000}, max_concurrent=8, max_body_bytes=1500)
    gzipped = {**JSON, "content-encoding": "gzip"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        first = asyncio.create_task(http.post("/in", content=gzip.compress(b"x" * 900), headers=gzipped))
        await asyncio.sleep(0.05)
        assert app.body_bytes == 1000, "a compressed body may hold its limit once inflated"
        # 30 bytes on the wire, but up to 1000 once inflated: 1000 + 1000 > 1500
        refused = await http.post("/in", content=gzip.compress(b"x" * 900), headers=gzipped)
        release.set()
        assert ((await first).status_code, (await first).text) == (200, "900")
    assert refused.status_code == 503
    assert app.body_bytes == 0
