"""The asyncio client: Client's API as coroutines, ``concurrency`` sender tasks on the caller's loop."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from activity_client import _delivery, _events, _fork
from activity_client._core import (
    ClientClosed,
    Core,
    ErrorCallback,
    OnFull,
    QueueFull,
    Stats,
    log,
    make_options,
)
from activity_client._delivery import Batch, Refusal
from activity_client._http import AsyncTransport, TransportError


class AsyncClient:
    """Client for asyncio programs: the same options, delivery and guarantees as ``Client``.

    ``await track(...)`` returns the event id as soon as the event is queued (it waits only when the
    queue is full and on_full="block"); ``await flush()`` and ``await close()`` (or ``async with``) as in
    Client. The sender tasks run on the loop of the first call; use the client from that loop only.
    There is no exit hook (a loop cannot be counted on at interpreter exit): close it yourself.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        max_batch_size: int = 100,
        max_batch_bytes: int = 512 * 1024,
        flush_interval: float = 0.5,
        gzip: bool = True,
        max_queue_size: int | None = None,
        on_full: OnFull = "block",
        block_timeout: float = 10.0,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_fsync: bool = False,
        concurrency: int = 4,
        timeout: float = 10.0,
        backoff_base: float = 0.1,
        max_backoff: float = 10.0,
        auth_retry_time: float = 60.0,
        on_error: ErrorCallback | None = None,
        shutdown_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        options = make_options(
            base_url,
            api_key=api_key,
            max_batch_size=max_batch_size,
            max_batch_bytes=max_batch_bytes,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            spooled=spool_dir is not None,
            on_full=on_full,
            block_timeout=block_timeout,
            concurrency=concurrency,
            timeout=timeout,
            backoff_base=backoff_base,
            max_backoff=max_backoff,
            auth_retry_time=auth_retry_time,
            on_error=on_error,
            shutdown_timeout=shutdown_timeout,
            headers=headers,
            ssl_context=ssl_context,
        )
        self._core = Core(options, gzip, spool_dir, spool_fsync)
        self._tasks: list[asyncio.Task[None]] = []
        self._transports: list[AsyncTransport] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        _fork.register(self)

    def _start(self) -> None:
        """Binds the client to the running loop and starts its senders (on first use)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._tasks:
            return
        if self._loop is not None and self._loop is not loop and not self._loop.is_closed():
            raise RuntimeError("this AsyncClient is bound to another event loop")
        self._loop = loop
        self._wake = asyncio.Event()  # senders re-check what is due
        self._changed = asyncio.Event()  # a batch finished: flush() and blocked track() re-check
        self._aborted = asyncio.Event()  # close() gave up: stop retrying
        options = self._core.options
        self._transports = [
            AsyncTransport(options.target, options.headers, options.timeout, options.ssl_context)
            for _ in range(options.concurrency)
        ]
        self._tasks = [
            loop.create_task(self._send_loop(t), name=f"activity-client-{i}")
            for i, t in enumerate(self._transports)
        ]

    # --- the API --------------------------------------------------------------------------------------

    async def track(
        self,
        user_id: str,
        action: str,
        metadata: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """As Client.track(); waits (without blocking the loop) only for room in a full queue."""
        core = self._core
        event_id = core.ids()
        body = _events.encode(event_id, user_id, action, metadata, timestamp)
        if core.closed:
            raise ClientClosed("track() after close()")
        self._start()
        if not core.has_room() and not await self._wait_for_room():
            return event_id
        if core.put(body):
            self._wake.set()
        return event_id

    # ``timeout`` rather than asyncio.timeout(): the same signature as Client, and a timeout is an
    # answer (False: not everything delivered yet), not an error.
    async def flush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Waits until every event tracked before this call was accepted or refused. False on timeout."""
        core = self._core
        if core.closed:  # nothing is sent any more (a spool keeps what is left for later)
            return core.settled(core.enqueued)
        self._start()
        target = core.enqueued
        core.flush_upto = max(core.flush_upto, target)
        self._wake.set()
        return await self._wait(lambda: core.settled(target), timeout)

    async def close(self, timeout: float | None = -1.0) -> None:  # noqa: ASYNC109
        """As Client.close(): flush up to ``timeout`` (default ``shutdown_timeout``), then stop."""
        core = self._core
        if core.closed:
            return
        if timeout is not None and timeout < 0:
            timeout = core.options.shutdown_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        delivered = await self.flush(timeout)
        core.closed = True  # senders drain what was tracked meanwhile, then stop
        self._wake.set()
        self._changed.set()
        if not delivered:
            self._aborted.set()
        tasks, self._tasks = self._tasks, []
        if tasks:
            left_time = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, running = await asyncio.wait(tasks, timeout=left_time if delivered else 0.0)
            if running:  # out of time: senders waiting to retry stop; one stuck in a request is cancelled
                self._aborted.set()
                _, running = await asyncio.wait(running, timeout=0.05)
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
        left: list[Refusal] = []
        while core.spool is None and len(core.queue):  # a spool keeps them
            left += core.abandon(core.take())
        for batch in list(core.in_flight.values()):
            left += core.abandon(batch)
        core.queue.close()
        core.report(left)
        for transport in self._transports:
            await transport.close()

    @property
    def stats(self) -> Stats:
        return self._core.stats()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    # --- waiting --------------------------------------------------------------------------------------

    async def _wait(self, done: Callable[[], bool], seconds: float | None) -> bool:
        """Waits until ``done()`` holds, re-checking whenever a batch finishes. False after ``seconds``."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not done():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                pass
        return True

    async def _wait_for_room(self) -> bool:
        core = self._core
        policy = core.options.on_full
        if policy == "drop":
            core.drop()
            return False
        if policy == "block":
            await self._wait(lambda: core.has_room() or core.closed, core.options.block_timeout)
            if core.closed:
                raise ClientClosed("the client was closed while track() waited for room")
            if core.has_room():
                return True
        core.full += 1
        raise QueueFull(f"{core.options.max_queue_size} events are waiting to be sent")

    async def _sleep_until(self, until: float) -> bool:
        """False if close() gave up meanwhile."""
        remaining = until - time.monotonic()
        if remaining > 0:
            try:
                async with asyncio.timeout(remaining):
                    await self._aborted.wait()
            except TimeoutError:
                pass
        return not self._aborted.is_set()

    # --- senders --------------------------------------------------------------------------------------

    async def _next_batch(self) -> Batch | None:
        core = self._core
        while True:
            if self._aborted.is_set() or (core.closed and not len(core.queue)):
                return None
            due = core.due_in(time.monotonic())
            if due == 0.0:
                batch = core.take()
                if len(core.queue):
                    self._wake.set()  # another sender times what is left
                return batch
            self._wake.clear()
            try:
                async with asyncio.timeout(due):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _send_loop(self, transport: AsyncTransport) -> None:
        while (batch := await self._next_batch()) is not None:
            await self._deliver([batch], transport)

    async def _deliver(self, pending: list[Batch], transport: AsyncTransport) -> None:
        core = self._core
        options = core.options
        while pending:
            batch = pending.pop(0)
            if not await self._sleep_until(max(batch.due, core.not_before)):
                refusals = [r for b in [batch, *pending] for r in core.abandon(b)]
                self._changed.set()
                core.report(refusals)
                return
            body, gzipped = core.body(batch)
            core.requests += 1
            try:
                answer = await transport.post(body, gzipped)
            except TransportError as exc:
                verdict = _delivery.failed(batch, str(exc), options.backoff)
            else:
                verdict = _delivery.judge(
                    batch,
                    answer.status,
                    answer.retry_after,
                    answer.body,
                    gzipped=gzipped,
                    backoff=options.backoff,
                    auth_retry_time=options.auth_retry_time,
                    now=time.monotonic(),
                )
            if verdict.problem is not None and verdict.resend:
                log.info(
                    "%d events not delivered (%s); sending again in %.2f s",
                    len(batch.events),
                    verdict.problem,
                    verdict.delay,
                )
            if verdict.finished:
                core.queue.done(verdict.finished)
            core.apply(batch, verdict)
            if verdict.finished:
                self._changed.set()
            core.report(verdict.refusals)
            pending[:0] = verdict.resend

    # --- fork -----------------------------------------------------------------------------------------

    def _before_fork(self) -> None:
        pass

    def _after_fork_in_parent(self) -> None:
        pass

    def _after_fork_in_child(self) -> None:
        # The parent's loop, tasks and connections are not the child's; it starts empty, on its own loop.
        for transport in self._transports:
            transport.abandon()
        self._tasks, self._transports, self._loop = [], [], None
        if not self._core.closed:
            self._core.reset_in_child()
