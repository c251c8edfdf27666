"""HTTP/1.1 POST over one persistent connection: a socket for Client, asyncio streams for AsyncClient.

Each sender owns one connection and reuses it (HTTP/1.1 keep-alive, TCP_NODELAY). A request that fails
on a connection that was already used (the server closed it while idle: keep-alive timeout, restart) is
sent once more at once on a new connection, since a batch is safe to resend; any other failure is a
TransportError for the retry policy. ``timeout`` bounds each connect, send and receive.
"""

from __future__ import annotations

import asyncio
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


_MAX_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Head:
    status: int
    headers: dict[str, str]
    keep_alive: bool

    @classmethod
    def parse(cls, raw: bytes) -> _Head:
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1.") or len(rest) < 3:
            raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        return cls(int(rest[:3]), headers, keep)

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def length(self) -> int | None:
        """The body's length, 0 for none, None to read until the connection closes."""
        if "content-length" in self.headers:
            return int(self.headers["content-length"])
        return 0 if self.status in (204, 304) else None


def _request_head(target: Target, headers: Mapping[str, str]) -> str:
    lines = "".join(f"{k}: {v}\r\n" for k, v in {"Host": target.host_header, **headers}.items())
    return f"POST {target.path} HTTP/1.1\r\n{lines}"


def _request(head: str, body: bytes, gzipped: bool) -> bytes:
    encoding = "Content-Encoding: gzip\r\n" if gzipped else ""
    return f"{head}{encoding}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body


class SyncTransport:
    """Over a plain socket rather than http.client: one sendall and usually one recv a request, and a
    few microseconds of parsing where http.client spends ~100 (header objects, email.parser), all of it
    holding the GIL that track() needs."""

    def __init__(
        self, target: Target, headers: Mapping[str, str], timeout: float, ssl_context: ssl.SSLContext | None
    ):
        self._target = target
        self._timeout = timeout
        self._ssl = ssl_context if ssl_context is not None or target.scheme == "http" else None
        self._head = _request_head(target, headers)
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._used = False

    def _connect(self) -> socket.socket:
        t = self._target
        sock = socket.create_connection((t.host, t.port), timeout=self._timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if t.scheme == "https":
                context = self._ssl if self._ssl is not None else ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=t.host)
        except BaseException:
            sock.close()
            raise
        return sock

    def post(self, body: bytes, gzipped: bool) -> Answer:
        request = _request(self._head, body, gzipped)
        for fresh_retry in (False, True):
            reused = self._sock is not None and self._used
            try:
                if self._sock is None:
                    self._sock, self._used = self._connect(), False
                    self._buf.clear()
                self._sock.sendall(request)
                answer, keep = self._read_answer()
            except (OSError, EOFError, ValueError) as exc:
                self.close()
                if reused and not fresh_retry and not isinstance(exc, TimeoutError):
                    continue
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            self._used = True
            if not keep:
                self.close()
            return answer
        raise AssertionError("unreachable")

    def _read_answer(self) -> tuple[Answer, bool]:
        head = _Head.parse(self._read_until(b"\r\n\r\n"))
        while head.status < 200:  # 100 Continue and the like carry no body
            head = _Head.parse(self._read_until(b"\r\n\r\n"))
        keep = head.keep_alive
        if head.chunked:
            parts = []
            while size := int(self._read_until(b"\r\n").split(b";")[0], 16):
                parts.append(self._read_exactly(size))
                self._read_exactly(2)
            while self._read_until(b"\r\n") != b"\r\n":  # trailers
                pass
            body = b"".join(parts)
        elif (length := head.length) is not None:
            body = self._read_exactly(length)
        else:
            body, keep = self._read_to_end(), False
        return Answer(head.status, head.headers.get("retry-after"), body), keep

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self._buf += chunk

    def _read_until(self, separator: bytes) -> bytes:
        while (at := self._buf.find(separator)) < 0:
            if len(self._buf) > _MAX_HEAD:
                raise ValueError("answer head too large")
            self._fill()
        end = at + len(separator)
        out = bytes(self._buf[:end])
        del self._buf[:end]
        return out

    def _read_exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _read_to_end(self) -> bytes:
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def abandon(self) -> None:
        """In a forked child: close the child's copy of the parent's connection. Only the descriptor:
        no shutdown, no TLS close_notify, so the parent's connection goes on undisturbed."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class AsyncTransport:
    """A deliberately small HTTP/1.1 client: POST with Content-Length, answers with Content-Length,
    chunked, or read to the end of the connection."""

    def __init__(
        self, target: Target, headers: Mapping[str, str], timeout: float, ssl_context: ssl.SSLContext | None
    ):
        self._target = target
        self._timeout = timeout
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._head = _request_head(target, headers)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._used = False

    async def post(self, body: bytes, gzipped: bool) -> Answer:
        request = _request(self._head, body, gzipped)
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
        """In a forked child: forget the parent's streams. They belong to the parent's event loop, which
        cannot be used here; their descriptors are left to the garbage collector."""
        self._streams = None


async def _read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    head = _Head.parse(await reader.readuntil(b"\r\n\r\n"))
    while head.status < 200:
        head = _Head.parse(await reader.readuntil(b"\r\n\r\n"))
    keep = head.keep_alive
    if head.chunked:
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
        body = b"".join(parts)
    elif (length := head.length) is not None:
        body = await reader.readexactly(length)
    else:
        body, keep = await reader.read(), False
    return Answer(head.status, head.headers.get("retry-after"), body), keep
