"""HTTP/1.1 POST over one persistent connection: http.client for threads, asyncio streams for AsyncClient.

Each sender owns one connection and reuses it. A request that fails on a connection that was already
used (the server closed it while idle: keep-alive timeout, restart) is sent once more at once on a new
connection, since a batch is safe to resend; any other failure is a TransportError for the retry policy.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

BATCH_PATH = "/api/activities/batch"


class TransportError(Exception):
    """No HTTP answer: connection refused or reset, timeout, malformed answer."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, base_url: str) -> Target:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL, not {base_url!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        return cls(url.scheme, url.hostname, port, url.path.rstrip("/") + BATCH_PATH)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def request_headers(api_key: str | None, user_agent: str, extra: Mapping[str, str]) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": user_agent}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    headers.update(extra)
    return headers


class SyncTransport:
    def __init__(
        self, target: Target, headers: Mapping[str, str], timeout: float, ssl_context: ssl.SSLContext | None
    ):
        self._target = target
        self._headers = dict(headers)
        self._timeout = timeout
        self._ssl = ssl_context
        self._conn: http.client.HTTPConnection | None = None
        self._used = False

    def _connect(self) -> http.client.HTTPConnection:
        t = self._target
        conn: http.client.HTTPConnection
        if t.scheme == "https":
            conn = http.client.HTTPSConnection(t.host, t.port, timeout=self._timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(t.host, t.port, timeout=self._timeout)
        conn.connect()
        # http.client sends the head and the body in two writes: with Nagle's algorithm the body waits
        # for the ACK of the head, which the server delays (~40 ms a request, measured).
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def post(self, body: bytes, gzipped: bool) -> Answer:
        headers = self._headers if not gzipped else {**self._headers, "Content-Encoding": "gzip"}
        for fresh_retry in (False, True):
            reused = self._conn is not None and self._used
            try:
                if self._conn is None:
                    self._conn, self._used = self._connect(), False
                conn = self._conn
                conn.request("POST", self._target.path, body, headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused and not fresh_retry and not isinstance(exc, TimeoutError):
                    continue
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            self._used = True
            if response.will_close:
                self.close()
            return Answer(response.status, response.getheader("Retry-After"), data)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def abandon(self) -> None:
        """In a forked child: forget the parent's connection without touching it."""
        self._conn = None


class AsyncTransport:
    """A deliberately small HTTP/1.1 client: POST with Content-Length, answers with Content-Length,
    chunked, or read to the end of the connection."""

    def __init__(
        self, target: Target, headers: Mapping[str, str], timeout: float, ssl_context: ssl.SSLContext | None
    ):
        self._target = target
        self._timeout = timeout
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": target.host_header, **headers}.items())
        self._head = f"POST {target.path} HTTP/1.1\r\n{head}"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._used = False

    async def post(self, body: bytes, gzipped: bool) -> Answer:
        encoding = "Content-Encoding: gzip\r\n" if gzipped else ""
        request = f"{self._head}{encoding}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        for fresh_retry in (False, True):
            reused = self._streams is not None and self._used
            try:
                async with asyncio.timeout(self._timeout):
                    if self._streams is None:
                        self._streams, self._used = await self._connect(), False
                    reader, writer = self._streams
                    writer.write(request)
                    await writer.drain()
                    answer, keep = await _read_answer(reader)
            except (
                OSError,
                EOFError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,
                TimeoutError,
            ) as exc:
                await self.close()
                if reused and not fresh_retry and not isinstance(exc, TimeoutError):
                    continue
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            self._used = True
            if not keep:
                await self.close()
            return answer
        raise AssertionError("unreachable")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        t = self._target
        if t.scheme == "https":
            return await asyncio.open_connection(t.host, t.port, ssl=self._ssl, server_hostname=t.host)
        return await asyncio.open_connection(t.host, t.port)

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass

    def abandon(self) -> None:
        self._streams = None


async def _read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if status >= 200:
            break  # 1xx (100 Continue) carries no body: read the next head
    keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif status in (204, 304):
        body = b""
    else:
        body, keep = await reader.read(), False
    return Answer(status, headers.get("retry-after"), body), keep
