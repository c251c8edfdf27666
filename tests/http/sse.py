"""A client for streamed answers in-process (httpx's ASGI transport waits for the whole body, which a
live stream never finishes): it calls the app directly and hands over each body chunk as it is sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.types import ASGIApp, Message

from tests.http.conftest import FULL_KEY, PEER


@dataclass
class Streamed:
    status: int
    headers: dict[str, str]
    chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    buffer: str = ""

    async def events(self, count: int, within: float = 5) -> list[dict[str, str]]:
        """The next ``count`` events (comments included, as {"comment": ...}), parsed from the stream."""
        found: list[dict[str, str]] = []
        async with asyncio.timeout(within):
            while len(found) < count:
                while "\n\n" not in self.buffer:
                    chunk = await self.chunks.get()
                    if chunk is None:
                        return found
                    self.buffer += chunk.decode()
                block, self.buffer = self.buffer.split("\n\n", 1)
                event: dict[str, str] = {}
                for line in block.split("\n"):
                    if line.startswith(":"):
                        event["comment"] = line[1:].strip()
                    else:
                        name, _, value = line.partition(": ")
                        event[name] = value
                found.append(event)
        return found

    async def ended(self, within: float = 5) -> bool:
        async with asyncio.timeout(within):
            while (chunk := await self.chunks.get()) is not None:
                self.buffer += chunk.decode()
        return True


@asynccontextmanager
async def stream(
    app: ASGIApp,
    path: str,
    params: Any = None,
    headers: Mapping[str, str] | None = None,
    key: str | None = FULL_KEY,
) -> AsyncIterator[Streamed]:
    """GET ``path`` and yield once the answer started; leaving the block disconnects the client."""
    sent = {"authorization": f"Bearer {key}"} if key else {}
    sent.update({k.lower(): v for k, v in (headers or {}).items()})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": urlencode(params or {}, doseq=True).encode(),
        "headers": [(k.encode(), v.encode()) for k, v in sent.items()],
        "client": PEER,
        "server": ("api.test", 80),
    }
    leave = asyncio.Event()
    started: asyncio.Future[Streamed] = asyncio.get_running_loop().create_future()
    streamed: Streamed | None = None
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal streamed
        if message["type"] == "http.response.start":
            streamed = Streamed(message["status"], {k.decode(): v.decode() for k, v in message["headers"]})
            started.set_result(streamed)
        elif message["type"] == "http.response.body" and streamed is not None:
            if message.get("body"):
                streamed.chunks.put_nowait(message["body"])
            if not message.get("more_body", False):
                streamed.chunks.put_nowait(None)

    task = asyncio.create_task(app(scope, receive, send))
    try:
        async with asyncio.timeout(5):
            yield await started
    finally:
        leave.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
