"""Checks made before a request body is parsed: the API must not be overloaded (503), the body must be
JSON (415; text/plain holding JSON from a publishable key), in a content coding the API takes (415),
within its size limit (413) and, compressed, a stream that inflates (400).

A declared Content-Length over the limit is refused without reading a byte of the body; a chunked body
is read only up to the limit, and a compressed one inflated only up to it (bodies.py). The guard reads
the body itself, before the request takes a processing slot, and hands it on in one message, as the
routes read it: inflated and, from a beacon, as JSON. Pure ASGI, so it costs next to nothing on the hot
path.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from collections.abc import Collection, Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from activity_service.interfaces.http import bodies
from activity_service.interfaces.http.problems import problem
from activity_service.interfaces.http.route_table import route_path
from activity_service.interfaces.http.security.keys import Client


class LoopLag:
    """How late the event loop runs its callbacks: the queue a CPU-bound process builds before any
    request even reaches the application. Sampled by a task that sleeps a fixed interval."""

    INTERVAL = 0.05

    def __init__(self) -> None:
        self.seconds = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.INTERVAL)
            self.seconds = max(0.0, loop.time() - before - self.INTERVAL)


class AcceptQueue:
    """How many connections wait in the kernel for the server to accept them.

    When many clients connect faster than one CPU-bound process answers, this is where the queue forms:
    the event loop is never late by much and few requests are in progress at once, yet each new
    connection waits behind all those queued before it (measured: 2,048, the whole listen backlog,
    and answers 3 s late at 3x capacity). Linux reports the length for a listening socket in its
    TCP_INFO (``tcpi_unacked``, what ``ss -lt`` shows as Recv-Q); elsewhere it reads as 0.
    """

    _UNACKED = struct.Struct("I")
    _OFFSET = 24  # u8 x 8, then rto, ato, snd_mss, rcv_mss, unacked (linux/tcp.h)

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []

    def watch(self, sock: socket.socket) -> None:
        if sys.platform == "linux" and sock.family in (socket.AF_INET, socket.AF_INET6):
            self._sockets.append(sock)

    def length(self) -> int:
        waiting = 0
        for sock in self._sockets:
            try:
                info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, self._OFFSET + 4)
            except OSError:  # closed while shutting down
                continue
            waiting += self._UNACKED.unpack_from(info, self._OFFSET)[0]
        return waiting


class IngestGuard:
    def __init__(
        self,
        app: ASGIApp,
        limits: Mapping[str, int],
        max_concurrent: int,
        max_loop_lag: float = 0.25,
        accept_queue: AcceptQueue | None = None,
        max_accept_queue: int = 64,
        max_body_bytes: int = 16 * 1024 * 1024,
        max_compression_ratio: int = 100,
    ) -> None:
        """``limits``: the largest body, in bytes, that a POST to each (routed) path may carry. An ingest
        request is refused with 503 at once, before its body is read, while ``max_concurrent`` of them
        are being processed, while the event loop runs more than ``max_loop_lag`` seconds late, while
        more than ``max_accept_queue`` connections wait to be accepted, or while the bodies of the ingest
        requests alive would pass ``max_body_bytes`` with this one (its declared length; its limit when
        chunked): overload is refused promptly (a refusal costs a fraction of an acceptance, so the queue
        drains) instead of queueing behind a busy CPU, and what bodies cost in memory is bounded in bytes.
        A compressed body counts its inflated bytes against ``limits`` and ``max_body_bytes``, and may
        inflate to at most ``max_compression_ratio`` times its size (bodies.py).

        A request takes one of the ``max_concurrent`` slots only once its body is in: a client that sends
        its body slowly holds a socket (for at most API_BODY_TIMEOUT_SECONDS, see connections.py) and its
        share of ``max_body_bytes``, never a slot, so slow bodies do not block other clients' POSTs."""
        self.app = app
        self.limits = dict(limits)
        self.max_concurrent = max_concurrent
        self.max_loop_lag = max_loop_lag
        self.accept_queue = accept_queue if accept_queue is not None else AcceptQueue()
        self.max_accept_queue = max_accept_queue
        self.max_body_bytes = max_body_bytes
        self.max_compression_ratio = max_compression_ratio
        self.in_progress = 0
        self.body_bytes = 0
        """Bytes reserved by the bodies of the ingest requests alive (being read or processed)."""
        self.lag = LoopLag()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        post = scope["type"] == "http" and scope["method"] == "POST"
        limit = self.limits.get(route_path(scope)) if post else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        self.lag.start()
        if self._busy():
            await _BUSY(scope, receive, send)
            return
        headers = Headers(scope=scope)
        media = bodies.media_type(headers.get("content-type", ""))
        if media is None or (media == "text" and not _publishable(scope)):
            await _UNSUPPORTED_MEDIA(scope, receive, send)
            return
        try:
            # Two Content-Encoding lines are one list (RFC 9110 5.3): stacked codings, refused.
            encoding = bodies.coding(",".join(headers.getlist("content-encoding")) or None)
        except ValueError:
            await _UNSUPPORTED_CODING(scope, receive, send)
            return
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(bodies.TooLarge(limit))(scope, receive, send)
            return
        # What the body will hold in memory: a compressed one, up to its limit once inflated.
        reserved = limit if declared is None or encoding is not None else int(declared)
        if self.body_bytes and self.body_bytes + reserved > self.max_body_bytes:
            await _BUSY(scope, receive, send)
            return
        self.body_bytes += reserved
        try:
            try:
                body = await bodies.read(
                    receive,
                    limit,
                    encoding,
                    self.max_compression_ratio,
                    None if declared is None else int(declared),
                )
            except bodies.Gone:
                return  # the client went away (or its body deadline passed) before sending it all
            except bodies.TooLarge as exc:
                await _too_large(exc)(scope, receive, send)
                return
            except bodies.Corrupt as exc:
                await problem(400, str(exc))(scope, receive, send)
                return
            if self.in_progress >= self.max_concurrent:
                await _BUSY(scope, receive, send)
                return
            if encoding is not None or media != "json":
                scope = _as_json(scope, len(body))
            self.in_progress += 1
            try:
                await self.app(scope, bodies.replay(body, receive), send)
            finally:
                self.in_progress -= 1
        finally:
            self.body_bytes -= reserved

    def _busy(self) -> bool:
        return (
            self.in_progress >= self.max_concurrent
            or self.lag.seconds > self.max_loop_lag
            or self.accept_queue.length() > self.max_accept_queue
        )


_BUSY = problem(503, "The API is over capacity; nothing was accepted.", headers={"Retry-After": "1"})


_UNSUPPORTED_MEDIA = problem(
    415,
    "Send the body as JSON, with Content-Type: application/json (text/plain holding JSON is accepted only "
    "with a publishable key, from a browser).",
)
_UNSUPPORTED_CODING = problem(
    415,
    "The body's Content-Encoding is not one this API takes: send it as it is, or compressed with gzip or "
    "deflate (one coding).",
    headers={"Accept-Encoding": bodies.ACCEPTED_CODINGS},
)


def _publishable(scope: Scope) -> bool:
    """Whether the request's key (the gate put its client in the scope's state) is a publishable one."""
    client = scope.get("state", {}).get("client")
    return isinstance(client, Client) and client.publishable


def _too_large(exc: bodies.TooLarge) -> ASGIApp:
    if exc.ratio is not None:
        return problem(413, str(exc), limit=exc.limit, maxCompressionRatio=exc.ratio)
    return problem(413, str(exc), limit=exc.limit)


def _as_json(scope: Scope, length: int) -> Scope:
    """The request as the routes read its body: inflated, JSON, of ``length`` bytes."""
    dropped = (b"content-encoding", b"content-length", b"content-type")
    headers = [(name, value) for name, value in scope["headers"] if name not in dropped]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    return {**scope, "headers": headers}


class ReadGuard:
    """At most ``max_concurrent`` reads (GET and HEAD under /api) in progress in this process; more are
    answered 503 with Retry-After at once, so that a burst of costly reads queues in no database pool
    and leaves it to ingest and readiness. Pure ASGI, on the routed path."""

    def __init__(
        self, app: ASGIApp, max_concurrent: int, prefix: str = "/api/", exclude: Collection[str] = ()
    ) -> None:
        """``exclude``: routed paths that are not one read but a long-lived answer with bounds of their
        own (the live tail's Server-Sent Events: STREAM_*)."""
        self.app = app
        self.max_concurrent = max_concurrent
        self.prefix = prefix
        self.exclude = frozenset(exclude)
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not path.startswith(self.prefix)
            or path in self.exclude
        ):
            await self.app(scope, receive, send)
            return
        if self.in_progress >= self.max_concurrent:
            await _READS_BUSY(scope, receive, send)
            return
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1


_READS_BUSY = problem(
    503,
    "As many reads as this API process runs at once are in progress; retry shortly.",
    headers={"Retry-After": "1"},
)
