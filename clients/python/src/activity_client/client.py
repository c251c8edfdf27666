"""The threaded client: track() queues and returns, ``concurrency`` sender threads POST the batches."""

from __future__ import annotations

import atexit
import os
import ssl
import threading
import time
import weakref
from collections.abc import Mapping
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
from activity_client._events import Event
from activity_client._http import SyncTransport, TransportError

_open_clients: weakref.WeakSet[Client] = weakref.WeakSet()


class Client:
    """Sends activities to activity-service in batches, from background threads.

    ``track()`` returns the event's id at once; events are POSTed to ``/api/activities/batch`` in
    batches of ``max_batch_size``, or after ``flush_interval`` seconds, by ``concurrency`` threads with
    a persistent connection each. Failed batches are resent with the same ids (the server stores each
    id once). ``flush()`` waits for everything tracked before it; ``close()`` flushes and stops, and is
    called at interpreter exit for clients still open. Safe to use from many threads and across
    ``os.fork()`` (the child starts empty: what the parent queued is the parent's to send).
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
        self._new_locks()
        self._threads: list[threading.Thread] = []
        self._transports: list[SyncTransport] = []
        self._abort = False  # close() gave up: senders stop retrying
        self._close_lock = threading.Lock()
        _fork.register(self)
        _open_clients.add(self)
        self._start()

    def _new_locks(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # senders wait here for a batch to be due
        self._room = threading.Condition(self._lock)  # track() waits here for room (on_full="block")
        self._idle = threading.Condition(self._lock)  # flush() waits here
        self._room_waiters = 0
        self._idle_waiters = 0

    # --- the API --------------------------------------------------------------------------------------

    def track(
        self,
        user_id: str,
        action: str,
        metadata: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """Queues one activity and returns its event id (a UUIDv7) without waiting for the network.

        ``timestamp`` (naive means UTC) defaults to now. With a spool the event is on disk when this
        returns. A full queue blocks up to ``block_timeout`` then raises QueueFull (on_full="block"),
        raises at once ("raise"), or drops the event and counts it ("drop"; the id is still returned).
        """
        event_id = self._core.ids()
        body = _events.encode(event_id, user_id, action, metadata, timestamp)
        core = self._core
        with self._lock:
            if core.closed:
                raise ClientClosed("track() after close()")
            if not self._threads:
                self._start()
            if not core.has_room() and not self._wait_for_room():
                return event_id
            if core.put(body):
                self._work.notify()
        return event_id

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every event tracked before this call was accepted or refused. False on timeout."""
        core = self._core
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if core.closed:  # nothing is sent any more (a spool keeps what is left for later)
                return core.settled(core.enqueued)
            if not self._threads and core.enqueued > core.finished:  # e.g. in a forked child, or at exit
                self._start()
            target = core.enqueued
            core.flush_upto = max(core.flush_upto, target)
            self._work.notify_all()
            self._idle_waiters += 1
            try:
                while not core.settled(target):
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._idle.wait(remaining)
                return True
            finally:
                self._idle_waiters -= 1

    def close(self, timeout: float | None = -1.0) -> None:
        """Flushes (up to ``timeout`` seconds; default ``shutdown_timeout``, None for no limit), then stops
        the senders. Without a spool, events not confirmed by then are reported to on_error as "closed";
        with one they stay on disk for the next client on the same spool. Idempotent."""
        if timeout is not None and timeout < 0:
            timeout = self._core.options.shutdown_timeout
        with self._close_lock:
            if self._core.closed:
                return
            deadline = None if timeout is None else time.monotonic() + timeout
            delivered = self.flush(timeout)
            with self._lock:
                self._core.closed = True  # senders drain what other threads tracked meanwhile, then stop
                self._abort = not delivered
                self._work.notify_all()
                self._room.notify_all()
            threads, self._threads = self._threads, []
            threads = [t for t in threads if t is not threading.current_thread()]
            for thread in threads:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if any(t.is_alive() for t in threads):  # out of time: stop retrying, give up what is left
                with self._lock:
                    self._abort = True
                    self._work.notify_all()
                for thread in threads:
                    thread.join(1.0)  # one stuck in a request ends when its socket is closed below
            left: list[Refusal] = []
            with self._lock:
                while self._core.spool is None and len(self._core.queue):  # a spool keeps them
                    left += self._core.abandon(self._core.take())
                for batch in list(self._core.in_flight.values()):
                    left += self._core.abandon(batch)
                self._core.queue.close()
            self._core.report(left)
            for transport in self._transports:
                transport.close()
            _open_clients.discard(self)

    @property
    def stats(self) -> Stats:
        with self._lock:
            return self._core.stats()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # --- senders --------------------------------------------------------------------------------------

    def _start(self) -> None:
        options = self._core.options
        self._transports = [
            SyncTransport(options.target, options.headers, options.timeout, options.ssl_context)
            for _ in range(options.concurrency)
        ]
        self._threads = [
            threading.Thread(target=self._send_loop, args=(t,), name=f"activity-client-{i}", daemon=True)
            for i, t in enumerate(self._transports)
        ]
        for thread in self._threads:
            thread.start()

    def _wait_for_room(self) -> bool:
        """Under the lock, with the queue full: True once there is room, False if the event is dropped."""
        core = self._core
        policy = core.options.on_full
        if policy == "drop":
            core.drop()
            return False
        if policy == "block":
            deadline = time.monotonic() + core.options.block_timeout
            self._room_waiters += 1
            try:
                while not core.has_room() and not core.closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._room.wait(remaining)
            finally:
                self._room_waiters -= 1
            if core.closed:
                raise ClientClosed("the client was closed while track() waited for room")
            if core.has_room():
                return True
        core.full += 1
        raise QueueFull(f"{core.options.max_queue_size} events are waiting to be sent")

    def _next_batch(self) -> Batch | None:
        core = self._core
        concurrent = core.queue.concurrent_take
        while True:
            with self._lock:
                while True:
                    if self._abort or (core.closed and not len(core.queue)):
                        return None
                    due = core.due_in(time.monotonic())
                    if due == 0.0:
                        break
                    self._work.wait(due)
                if not concurrent:
                    return self._register(core.take_events())
            events = core.take_events()  # the spool reads the file outside the client's lock
            with self._lock:
                if events:
                    return self._register(events)

    def _register(self, events: list[Event]) -> Batch:
        batch = self._core.register(events)
        if len(self._core.queue):
            self._work.notify()  # another sender times what is left
        return batch

    def _send_loop(self, transport: SyncTransport) -> None:
        while (batch := self._next_batch()) is not None:
            self._deliver([batch], transport)

    def _deliver(self, pending: list[Batch], transport: SyncTransport) -> None:
        """Sends a batch until it is finished: retried after its delay, split after a 413."""
        core = self._core
        options = core.options
        while pending:
            batch = pending.pop(0)
            with self._lock:
                if not self._sleep_until(max(batch.due, core.not_before)):
                    refusals = [r for b in [batch, *pending] for r in core.abandon(b)]
                    self._notify_finished()
                    break
                core.requests += 1
            body, gzipped = core.body(
                batch
            )  # outside the lock: zlib lets go of the GIL, track() must not wait
            try:
                answer = transport.post(body, gzipped)
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
                core.queue.done(verdict.finished)  # the spool's acks, before flush() can return
            with self._lock:
                core.apply(batch, verdict)
                if verdict.finished:
                    self._notify_finished(len(verdict.finished))
            core.report(verdict.refusals)
            pending[:0] = verdict.resend
        else:
            return
        core.report(refusals)

    def _sleep_until(self, until: float) -> bool:
        """Under the lock: waits until ``until``; False if close() gave up meanwhile."""
        while not self._abort:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return True
            self._work.wait(remaining)
        return False

    def _notify_finished(self, freed: int | None = None) -> None:
        if self._room_waiters:  # each blocked track() needs one place: wake no more than were freed
            self._room.notify(self._room_waiters if freed is None else min(freed, self._room_waiters))
        if self._idle_waiters:
            self._idle.notify_all()

    # --- fork -----------------------------------------------------------------------------------------

    def _before_fork(self) -> None:
        self._lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        # Only the forking thread exists here: fresh locks, no senders (started again by the next call),
        # the child's copies of the parent's connections closed, and none of the parent's queued events.
        self._new_locks()
        self._close_lock = threading.Lock()
        for transport in self._transports:
            transport.abandon()
        self._threads, self._transports = [], []
        self._abort = False
        if not self._core.closed:
            self._core.reset_in_child()


@atexit.register
def _close_at_exit() -> None:
    for client in list(_open_clients):
        try:
            client.close()
        except Exception:
            log.exception("closing an activity client at exit failed")
