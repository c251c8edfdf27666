"""What one HTTP connection may cost: deadlines for reading a request's head and body, and a head size.

uvicorn (httptools) has a keep-alive timeout between requests but nothing for a request that is being
read: a client that connects and never finishes its headers holds the connection (and, with a body that
never ends, the request) forever, and a 1 MiB header is read and accepted. This is uvicorn's own
HttpToolsProtocol with those three bounds added, passed to it as its ``http`` protocol class (its
extension point; the module pins the uvicorn release in the lock file, so its internals it relies on,
the parser callbacks and ``cycle``, are the tested ones):

- the head (request line and headers) must arrive within ``head_timeout`` of its first byte, or of the
  connection's opening for the first request: else 408 and close;
- the head may be at most ``max_head_bytes``: else 431 and close;
- the body must arrive within ``body_timeout`` of the head's end: else 408 and close (or only close,
  when the application already answered).

Idle connections between requests are closed after uvicorn's ``timeout_keep_alive``. A slow client so
costs a socket for a bounded time, never a request slot: the ingest guard takes its slot only once the
body is in (guard.py).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from activity_service.interfaces.http.security.headers import ALWAYS as ALWAYS_HEADERS
from activity_service.interfaces.http.security.headers import API_CSP


def _answer(status: int, detail: str) -> bytes:
    """A whole problem+json answer (RFC 9457, as every error of the API), written before any application
    runs: with the headers every answer carries (security/headers.py)."""
    phrase = HTTPStatus(status).phrase
    body = json.dumps({"type": "about:blank", "title": phrase, "status": status, "detail": detail}).encode()
    head = [
        f"HTTP/1.1 {status} {phrase}",
        "content-type: application/problem+json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name.decode()}: {value.decode()}" for name, value in ALWAYS_HEADERS),
        "content-security-policy: " + API_CSP,
        "cache-control: no-store",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


TIMEOUT = _answer(408, "The request was not received in time; the connection is closed.")
HEAD_TOO_LARGE = _answer(431, "The request line and headers are larger than this API accepts.")


class _HeadTooLarge(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    max_head_bytes: int = 65_536

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._reading_head = True
        self._head_bytes = 0
        self._heads = 0
        """Heads read on this connection so far."""
        self._parsed_head_bytes = 0
        self._head_too_large = False
        self._due: float | None = None
        """When the head or body being read must be in (loop time); None: nothing is being waited for."""
        self._timer: asyncio.TimerHandle | None = None
        """Fires at or before ``_due``: one timer re-armed lazily, not one per head and body."""

    @classmethod
    def with_limits(
        cls, head_timeout: float, body_timeout: float, max_head_bytes: int
    ) -> type[HttpToolsProtocol]:
        """This protocol with these bounds, as the class uvicorn's Config(http=...) takes."""
        return type(
            cls.__name__,
            (cls,),
            {"head_timeout": head_timeout, "body_timeout": body_timeout, "max_head_bytes": max_head_bytes},
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout)  # a connection that sends nothing is a head that never comes

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads, was_reading_head = self._heads, self._reading_head
        super().data_received(data)
        if heads == self._heads and was_reading_head and self._reading_head and self.parser is not None:
            # A head was being read before this chunk and no head ended in it: all of it is head. (A
            # chunk in which a head ended is not counted, so a body sent along with its head never counts
            # as headers; nor one that carried the end of a body, which leaves a head being read.)
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(HEAD_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = 0
        self._parsed_head_bytes = len(" HTTP/1.1\r\n") + len(self.scope.get("method", "OPTIONS"))
        if self._due is None:  # the next request of a kept-alive connection starts its own
            self._arm(self.head_timeout)

    # A head that arrives within one chunk is measured as the parser reads it: the request line and
    # each header, as written ("Name: value\r\n"). Raising from a parser callback makes uvicorn answer
    # a malformed request (send_400_response), which is where the 431 is written instead.
    def on_url(self, url: bytes) -> None:
        self._parsed_head_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_head_bytes += len(name) + len(value) + 4
        if self._parsed_head_bytes > self.max_head_bytes:
            self._head_too_large = True
            raise _HeadTooLarge
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse(HEAD_TOO_LARGE)
            return
        super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._heads += 1
        self._arm(self.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._reading_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        # Two deadlines per request on a kept-alive connection: a timer each cost more than the checks.
        # The one timer moves only to fire earlier; firing early, it waits on until what is due.
        due = self._due = self.loop.time() + seconds
        if self._timer is None or due < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(due, self._check)

    def _disarm(self) -> None:
        self._due = None  # the timer, when it fires, finds nothing due

    def _check(self) -> None:
        self._timer = None
        if self._due is None:
            return
        if self.loop.time() < self._due:  # re-armed since the timer was set
            self._timer = self.loop.call_at(self._due, self._check)
            return
        self._due = None
        self._expired()

    def _expired(self) -> None:
        cycle = self.cycle
        answered = cycle is not None and not self._reading_head and cycle.response_started
        if self._reading_head and self._head_bytes == 0 and cycle is not None and not cycle.response_complete:
            answered = True  # a pipelined head behind a response still being written: just close
        self._refuse(None if answered else TIMEOUT)

    def _refuse(self, answer: bytes | None) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the application's receive() says the client went away
            self.cycle.message_event.set()
        if answer is not None:
            self.transport.write(answer)
        self.transport.close()
