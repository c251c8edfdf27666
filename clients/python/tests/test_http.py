"""Both transports against a raw socket server: chunked answers, a connection the server closed while
idle (resent at once on a new one), an answer read to the end of the connection, and no answer."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from activity_client._http import AsyncTransport, SyncTransport, Target, TransportError

CHUNKED = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
    b'5\r\n{"a":\r\n4;ext=1\r\n 1}\n\r\n0\r\nX-Trailer: t\r\n\r\n'
)
UNTIL_CLOSE = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy"
LENGTH = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}"


class RawServer:
    """Answers each request with the next of ``script``: (bytes to send, then close the connection?)."""

    def __init__(self, script: list[tuple[bytes, bool]]) -> None:
        self.script = script
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while self.script:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self.script:
                    if not _read_request(conn):
                        break
                    answer, close = self.script.pop(0)
                    conn.sendall(answer)
                    if close:
                        break

    def stop(self) -> None:
        self.listener.close()


def _read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += conn.recv(65536)
    return True


@pytest.fixture
def raw() -> Iterator[Callable[[list[tuple[bytes, bool]]], RawServer]]:
    servers: list[RawServer] = []

    def make(script: list[tuple[bytes, bool]]) -> RawServer:
        servers.append(RawServer(script))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


SCRIPT = [(CHUNKED, False), (LENGTH, True), (LENGTH, False), (UNTIL_CLOSE, True)]


def _check(answers: list[tuple[int, str | None, bytes]], server: RawServer) -> None:
    assert answers == [
        (202, "7", b'{"a": 1}\n'),
        (202, None, b"{}"),
        (202, None, b"{}"),
        (503, None, b"busy"),
    ]
    # The server closed the first connection after the 2nd answer without saying so: the 3rd request
    # failed on it and was sent again at once on a second connection, without a TransportError.
    assert server.connections == 2


def test_sync_transport(raw: Callable[[list[tuple[bytes, bool]]], RawServer]) -> None:
    server = raw(list(SCRIPT))
    transport = SyncTransport(Target.parse(server.url), {}, timeout=5, ssl_context=None)
    answers = [transport.post(b"{}", False) for _ in range(4)]
    _check([(a.status, a.retry_after, a.body) for a in answers], server)
    transport.close()


def test_async_transport(raw: Callable[[list[tuple[bytes, bool]]], RawServer]) -> None:
    server = raw(list(SCRIPT))

    async def main() -> list[tuple[int, str | None, bytes]]:
        transport = AsyncTransport(Target.parse(server.url), {}, timeout=5, ssl_context=None)
        answers = [await transport.post(b"{}", True) for _ in range(4)]
        await transport.close()
        return [(a.status, a.retry_after, a.body) for a in answers]

    _check(asyncio.run(main()), server)


def test_no_answer_is_a_transport_error(raw: Callable[[list[tuple[bytes, bool]]], RawServer]) -> None:
    server = raw([(b"", True)])  # reads the request, closes without a word
    transport = SyncTransport(Target.parse(server.url), {}, timeout=5, ssl_context=None)
    with pytest.raises(TransportError):
        transport.post(b"{}", False)
