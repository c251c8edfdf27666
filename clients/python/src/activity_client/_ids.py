"""UUIDv7 event ids (RFC 9562), time-ordered and unique across threads, processes and forks.

Layout: 48-bit Unix milliseconds, version 7, then a 42-bit counter (the 12 bits of ``rand_a`` and the
top 30 of ``rand_b``, RFC 9562 section 6.2 "Method 1"), the variant, and 32 random bits. The counter
starts at a random 41-bit value each new millisecond and counts up within it, so ids of one generator
sort in creation order even within a millisecond or when the clock steps back (the last millisecond is
kept). Randomness comes from os.urandom; the buffered random bytes are thrown away in a forked child,
since a parent and child sharing them could otherwise produce the same id in the same millisecond (and
the server would store only one of the two events).
"""

from __future__ import annotations

import os
import threading
import time

from activity_client import _fork

_COUNTER_BITS = 42
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1
_RANDOM_BUFFER = 4096


class UuidV7:
    """Thread-safe generator of UUIDv7 strings (lowercase, hyphenated)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0
        self._random = b""
        self._offset = 0
        _fork.register(self)

    def _bytes(self, n: int) -> int:
        if self._offset + n > len(self._random):
            self._random = os.urandom(_RANDOM_BUFFER)
            self._offset = 0
        start = self._offset
        self._offset = start + n
        return int.from_bytes(self._random[start : start + n], "big")

    def next_int(self) -> int:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._last_ms:
                self._last_ms = ms
                self._counter = self._bytes(6) >> 7  # 41 bits: room to count up within the millisecond
            else:
                self._counter += 1
                if self._counter > _COUNTER_MAX:  # 2^41 ids in one millisecond: borrow the next one
                    self._last_ms += 1
                    self._counter = self._bytes(6) >> 7
            ms, counter = self._last_ms, self._counter
            tail = self._bytes(4)
        rand_a = counter >> 30
        rand_b = ((counter & ((1 << 30) - 1)) << 32) | tail
        return (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b

    def __call__(self) -> str:
        h = f"{self.next_int():032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    # A fork may happen while another thread holds the lock; the child gets a fresh one and new randomness.
    def _before_fork(self) -> None:
        self._lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._random = b""
        self._offset = 0
        self._last_ms = -1
