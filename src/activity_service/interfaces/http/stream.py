"""GET /api/activities/stream: Server-Sent Events, the live tail's wire format.

- First ``event: ready`` with the ``id`` to resume from if nothing arrives (``data: {}``);
- then per activity ``id: <cursor>``, ``event: accepted``, ``data: <the list's item shape>``;
- a ``: heartbeat`` comment after every ``STREAM_HEARTBEAT_SECONDS`` without an event;
- a final ``event: overflow`` (``data: {"detail"}``) when the client fell too far behind, then the end;
- the end, without a word, ``STREAM_MAX_SECONDS`` after it began (when set): the client reconnects with
  ``Last-Event-ID`` (EventSource does so by itself), maybe to another API process.

A reconnecting client sends ``Last-Event-ID`` (as EventSource does; a fetch() reader sets it): the stream
resumes after that event, with no gap and no repeat. Each batch of events goes out in one write, and
each event is rendered once for every stream caught up with the tail (``Frames``), so 200 open streams
cost 200 writes per batch, not 200 renderings per event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from activity_service.domain.errors import FieldError
from activity_service.domain.feed import Cursor, FeedBatch, FeedEntry, FeedOverflow
from activity_service.domain.query import InvalidQuery
from activity_service.interfaces.http.schemas.reads import activity_out

log = logging.getLogger(__name__)

MEDIA_TYPE = "text/event-stream"
MAX_TOKEN_LENGTH = 4096
HEARTBEAT = b": heartbeat\n\n"


def encode_cursor(cursor: Mapping[int, int]) -> str:
    """The SSE id: per partition, the next offset (opaque to clients)."""
    raw = ",".join(f"{p}:{o}" for p, o in sorted(cursor.items()))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor:
    """Raises InvalidQuery for anything this API did not hand out."""
    try:
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        cursor: dict[int, int] = {}
        for pair in raw.split(",") if raw else []:
            partition, offset = pair.split(":")
            p, o = int(partition), int(offset)
            if not (0 <= p < 100_000 and 0 <= o < 2**63) or p in cursor:
                raise ValueError(pair)
            cursor[p] = o
    except (ValueError, UnicodeDecodeError):
        raise InvalidQuery([FieldError("Last-Event-ID", "is not an event id this stream sent")]) from None
    return cursor


class Frames:
    """Each event rendered once, for every stream that shares the tail's cursor (an LRU of them)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self._frames: OrderedDict[object, bytes] = OrderedDict()
        self._capacity = capacity
        self._last: dict[bool, tuple[FeedBatch, bytes]] = {}

    def of_batch(self, batch: FeedBatch, addresses: bool) -> bytes:
        """Every event of ``batch``, rendered; joined once for all the streams handed this very batch."""
        last = self._last.get(addresses)
        if last is not None and last[0] is batch:
            return last[1]
        joined = b"".join(self.of(entry, addresses) for entry in batch.entries)
        self._last[addresses] = (batch, joined)
        return joined

    def of(self, entry: FeedEntry, addresses: bool) -> bytes:
        """``addresses``: with ``ipAddress`` (the two renderings are kept apart)."""
        if entry.key is None:
            return _frame(entry, addresses)
        key = (entry.key, addresses)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = _frame(entry, addresses)
            if len(self._frames) > self._capacity:
                self._frames.popitem(last=False)
        return frame


def _frame(entry: FeedEntry, addresses: bool) -> bytes:
    data = orjson.dumps(activity_out(entry.activity, addresses=addresses))
    return b"id: " + encode_cursor(entry.cursor).encode() + b"\nevent: accepted\ndata: " + data + b"\n\n"


class Streams:
    """How many streams are open in this process, against the bound (STREAM_MAX_CLIENTS)."""

    def __init__(self, max_clients: int, heartbeat_seconds: float, max_seconds: float = 0) -> None:
        self.max_clients = max_clients
        self.heartbeat_seconds = heartbeat_seconds
        self.max_seconds = max_seconds
        """A stream ends this long after it began (0: never); its client resumes with Last-Event-ID."""
        self.open = 0
        self.frames = Frames()


class EventStream(Response):
    """The response that sends the batches as events until the client leaves or the feed ends. A
    Response only so that FastAPI passes it through (and documents its media type); it writes its own
    messages."""

    media_type = MEDIA_TYPE

    def __init__(
        self, first: FeedBatch, batches: AsyncIterator[FeedBatch], streams: Streams, *, addresses: bool
    ) -> None:
        self._addresses = addresses
        self._first = first
        self._batches = batches
        self._streams = streams
        self.status_code = 200
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._streams.open += 1
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),  # proxies must not hold events back
                    ],
                }
            )
            streaming = asyncio.create_task(self._stream(send))
            leaving = asyncio.create_task(_until_disconnect(receive))
            await asyncio.wait({streaming, leaving}, return_when=asyncio.FIRST_COMPLETED)
            for task in (streaming, leaving):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if streaming.done() and not streaming.cancelled() and streaming.exception() is not None:
                raise streaming.exception()  # type: ignore[misc]
        finally:
            self._streams.open -= 1
            await self._batches.aclose()  # type: ignore[attr-defined]

    async def _stream(self, send: Send) -> None:
        frames, heartbeat = self._streams.frames, self._streams.heartbeat_seconds
        loop = asyncio.get_running_loop()
        ends = loop.time() + self._streams.max_seconds if self._streams.max_seconds else None
        batches = aiter(self._batches)
        # One pending read of the feed at a time, never cancelled by a heartbeat (cancelling it would
        # break the generator it reads).
        pending: asyncio.Future[FeedBatch] | None = None
        try:
            ready = b"id: " + encode_cursor(self._first.cursor).encode() + b"\nevent: ready\ndata: {}\n\n"
            await _write(send, ready)
            while True:
                left = None if ends is None else ends - loop.time()
                if left is not None and left <= 0:
                    break
                if pending is None:
                    pending = asyncio.ensure_future(anext(batches))
                done, _ = await asyncio.wait(
                    {pending}, timeout=heartbeat if left is None else min(heartbeat, left)
                )
                if not done:
                    if left is None or left > heartbeat:
                        await _write(send, HEARTBEAT)
                    continue
                batch, pending = pending.result(), None
                await _write(send, frames.of_batch(batch, self._addresses))
        except FeedOverflow as exc:
            await _write(send, b"event: overflow\ndata: " + orjson.dumps({"detail": str(exc)}) + b"\n\n")
        except StopAsyncIteration:
            pass
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, FeedOverflow):
                    await pending
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _write(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
