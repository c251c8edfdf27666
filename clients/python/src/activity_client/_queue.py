"""Where tracked events wait to be sent: in memory, or in a spool on disk (_spool.py).

Both keep events in the order they were put and hand them out once each (``take``); a taken event stays
with its sender until it is ``done`` (accepted, or refused for good). The client calls them under its
own lock, except the spool's take() and done() (see ``concurrent_take``). ``seq`` numbers events
0, 1, 2... in put order, which is what flush() waits by.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

from activity_client._events import Event


class EventQueue(Protocol):
    concurrent_take: bool
    """True: take() and done() lock for themselves and are called without the client's lock."""

    def __len__(self) -> int:
        """Events put and not taken yet."""
        ...

    def put(self, body: bytes) -> None:
        """Adds an event (its seq is the number put before it). With a spool it is on disk on return."""
        ...

    def take(self, max_items: int, max_bytes: int) -> list[Event]:
        """The oldest events, at most ``max_items`` and ``max_bytes`` of bodies (at least one event)."""
        ...

    def done(self, events: Sequence[Event]) -> None:
        """These events need no more sending: forget them (the spool records it on disk)."""
        ...

    def close(self) -> None:
        """Releases files; undelivered spooled events stay on disk for the next process."""
        ...

    def reset_in_child(self) -> None:
        """In a forked child: drop what the parent holds (the parent sends it), start empty."""
        ...


class MemoryQueue:
    """Events wait as their bodies alone (the id is in them): one bytes object each, which the garbage
    collector does not track and which is the least memory a queued event can take. (Event objects
    were walked at every collection; (id, body) tuples were 60% more memory to fault in while the
    queue grew, and a tracked allocation per event, so a collection every 700 track() calls.)"""

    concurrent_take = False

    def __init__(self) -> None:
        self._events: deque[bytes] = deque()
        self._head_seq = 0  # seq of the first waiting event

    def __len__(self) -> int:
        return len(self._events)

    def put(self, body: bytes) -> None:
        self._events.append(body)

    def take(self, max_items: int, max_bytes: int) -> list[Event]:
        events = self._events
        seq = self._head_seq
        body = events.popleft()
        batch = [Event(seq, body)]
        size = len(body)
        while events and len(batch) < max_items:
            size += len(events[0]) + 40  # + the sentAt each item gets
            if size > max_bytes:
                break
            batch.append(Event(seq + len(batch), events.popleft()))
        self._head_seq = seq + len(batch)
        return batch

    def done(self, events: Sequence[Event]) -> None:
        pass

    def close(self) -> None:
        self._events.clear()

    def reset_in_child(self) -> None:
        self._events = deque()
        self._head_seq = 0
