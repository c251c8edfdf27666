"""A disk queue: one append-only journal per process, owned through an flock.

Files in ``spool_dir``, for a process whose token is ``T`` (pid and random hex):

- ``T.lock``: held with flock(LOCK_EX) while the process's client is open. The kernel drops the lock
  when the process dies, however it dies, so "lock free" means "owner gone": no lease, no clock.
- ``T.000001.seg`` ...: records ``<crc32 as 8 hex><event bytes>\\n``, copied into a shared memory map
  of the segment before track() returns: that is the kernel's page cache, so they survive the process
  (SIGKILL included); with ``fsync=True`` also a power loss, at the price of an msync per event.
  A memory copy rather than os.write(): a system call lets go of the GIL, and a sender thread taking it
  then made track() wait for the sender's next pause (measured: p99 0.3-0.5 ms with os.write). A
  segment is allocated whole (16 MiB, posix_fallocate: a full disk is an OSError when it is made, not a
  SIGBUS later); its records end at the first NUL byte.
- ``T.000001.ack``: one (start, end) byte range (two little-endian u64) per finished batch: the records
  in it were accepted or refused and must not be sent again.

A segment is deleted once every record of it is finished (and a new one started when it is full). Each
process writes only its own files, so processes never contend; a forked child closes the parent's
descriptors (the parent keeps its lock) and starts a journal of its own.

When a client opens the spool it adopts every journal whose lock it can take (its owner died or closed
with events left): it copies the unfinished, intact records into its own journal, then deletes the old
files. A crash during adoption can leave a record in both journals; it is then sent twice with the same
id, and the server stores it once.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
import secrets
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from activity_client._events import Event

SEGMENT_BYTES = 16 * 1024 * 1024
_ACK = struct.Struct("<QQ")
_NAME = re.compile(r"^(?P<token>[0-9]+-[0-9a-f]+)\.(?:lock|(?P<n>[0-9]{6})\.(?P<kind>seg|ack))$")


@dataclass
class _Segment:
    n: int
    fd: int
    map: mmap.mmap | None = None
    capacity: int = 0
    size: int = 0
    read_off: int = 0
    outstanding: int = 0
    """Records taken and not done yet."""
    ack_fd: int | None = None


@dataclass
class SpoolStats:
    adopted: int = 0
    """Records copied from journals of processes that were gone when this one opened the spool."""
    corrupt: int = 0
    """Records of adopted journals skipped because their checksum did not match (a torn write)."""
    files: list[str] = field(default_factory=list)


class SpoolQueue:
    def __init__(
        self, directory: str | os.PathLike[str], *, fsync: bool = False, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self._dir = Path(directory)
        self._segment_bytes = segment_bytes
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self.stats = SpoolStats()
        self._token = ""
        self._lock_fd = -1
        self._segments: list[_Segment] = []
        self._by_number: dict[int, _Segment] = {}
        self._active = self._reading = _Segment(0, -1)
        self._next_seq = 0  # records written: put() only
        self._read_seq = 0  # records taken: take() only
        self._read_lock = threading.Lock()
        self._closed = False
        self._record_guess = 256  # bytes a record, to read about one batch from the file at a time
        self._open_own()
        self._adopt_orphans()

    # --- the EventQueue protocol ----------------------------------------------------------------------

    # Senders take and finish events under the spool's own lock, not the client's: reading a batch
    # back from the file (pread, parse) then never holds up track(), which appends under the client's.
    # The two sides share only the segment list (appended by put, trimmed by take/done) and sizes.
    concurrent_take = True

    def __len__(self) -> int:
        return self._next_seq - self._read_seq

    def put(self, body: bytes) -> None:
        self._append(b"%08x%b\n" % (zlib.crc32(body), body))
        self._next_seq += 1

    def take(self, max_items: int, max_bytes: int) -> list[Event]:
        with self._read_lock:
            return [] if self._closed else self._take(max_items, max_bytes)

    def _take(self, max_items: int, max_bytes: int) -> list[Event]:
        batch: list[Event] = []
        size = 0
        while len(batch) < max_items and self._next_seq > self._read_seq:
            seg = self._reading
            if seg.read_off >= seg.size:  # read to its end: the next segment is the one to read
                self._reading = self._segments[self._segments.index(seg) + 1]
                self._maybe_delete(seg)
                continue
            # This runs while track() waits for the GIL: one split and a lean loop, no per-byte search.
            lines = self._read(seg, (max_items - len(batch)) * self._record_guess).split(b"\n")
            lines.pop()  # after the last newline
            n, off, seq, start = seg.n, seg.read_off, self._read_seq, len(batch)
            for line in lines:
                length = len(line) + 1
                size += length + 32
                if len(batch) == max_items or (batch and size > max_bytes):
                    break
                batch.append(Event(seq, line[8:], (n, off, length)))
                seq += 1
                off += length
            taken = len(batch) - start
            if taken:
                self._record_guess = max(64, (off - seg.read_off) // taken + 16)
            seg.outstanding += taken
            seg.read_off = off
            self._read_seq = seq
            if size > max_bytes:
                break
        return batch

    def _read(self, seg: _Segment, wanted: int) -> bytes:
        """Whole records from the segment's read position on: about ``wanted`` bytes, at least one."""
        chunk = max(wanted, 4096)
        while True:
            remaining = seg.size - seg.read_off
            assert seg.map is not None
            data = seg.map[seg.read_off : seg.read_off + min(chunk, remaining)]
            end = data.rfind(b"\n")
            if end >= 0:
                return data[: end + 1]
            if chunk >= remaining:
                raise OSError(f"spool: segment {seg.n} of {self._token} ends without a newline")
            chunk *= 2  # one record longer than a chunk

    def done(self, events: Sequence[Event]) -> None:
        with self._read_lock:
            if not self._closed:  # else a sender finished after close(): the events stay, resent later
                self._done(events)

    def _done(self, events: Sequence[Event]) -> None:
        for n, start, end in _ranges(events):
            seg = self._by_number[n]
            if seg.ack_fd is None:
                seg.ack_fd = os.open(
                    self._path(self._token, n, "ack"), os.O_WRONLY | os.O_CREAT | os.O_APPEND
                )
            os.write(seg.ack_fd, _ACK.pack(start, end))
        for event in events:
            assert event.where is not None
            self._by_number[event.where[0]].outstanding -= 1
        for seg in [s for s in self._segments if s is not self._active]:
            self._maybe_delete(seg)

    def close(self) -> None:
        """Deletes this process's files if nothing is left in them, else leaves them to be adopted."""
        with self._read_lock:
            self._closed = True
            self._close()

    def _close(self) -> None:
        empty = len(self) == 0 and all(s.outstanding == 0 for s in self._segments)
        for seg in self._segments:
            self._close_segment(seg, delete=empty)
        self._segments = []
        if empty:
            _unlink(self._dir / f"{self._token}.lock")
        os.close(self._lock_fd)  # releases the flock: what is left is adoptable from now on

    def reset_in_child(self) -> None:
        # The parent's descriptors are shared with it; closing the child's copies leaves its lock held.
        for seg in self._segments:
            if seg.map is not None:
                seg.map.close()  # unmaps the child's view only
            os.close(seg.fd)
            if seg.ack_fd is not None:
                os.close(seg.ack_fd)
        os.close(self._lock_fd)
        self._open_own()

    # --- own journal ----------------------------------------------------------------------------------

    def _open_own(self) -> None:
        self._token = f"{os.getpid()}-{secrets.token_hex(6)}"
        # Locked under a name adopters ignore, then renamed: an adopter must never find it unlocked.
        pending = self._dir / f"{self._token}.lock.new"
        self._lock_fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(pending, self._dir / f"{self._token}.lock")
        self._segments = []
        self._by_number = {}
        self._next_seq = 0
        self._read_seq = 0
        self._read_lock = threading.Lock()
        self._new_segment()
        self._reading = self._active

    def _new_segment(self, at_least: int = 0) -> None:
        n = self._segments[-1].n + 1 if self._segments else 1
        fd = os.open(self._path(self._token, n, "seg"), os.O_RDWR | os.O_CREAT, 0o600)
        capacity = max(self._segment_bytes, at_least)
        try:
            os.posix_fallocate(fd, 0, capacity)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # ENOSPC and the like: refuse now
                os.close(fd)
                _unlink(self._path(self._token, n, "seg"))
                raise
            os.ftruncate(fd, capacity)  # a file system without fallocate
        seg = _Segment(n, fd, mmap.mmap(fd, capacity), capacity)
        self._segments.append(seg)
        self._by_number[n] = seg
        self._active = seg

    def _append(self, record: bytes) -> None:
        seg = self._active
        end = seg.size + len(record)
        if end > seg.capacity:
            self._new_segment(len(record))
            seg = self._active
            end = len(record)
        assert seg.map is not None
        seg.map[seg.size : end] = record
        if self._fsync:
            start = seg.size - seg.size % mmap.PAGESIZE
            seg.map.flush(start, end - start)
        seg.size = end

    def _maybe_delete(self, seg: _Segment) -> None:
        if seg is self._active or seg is self._reading or seg.read_off < seg.size or seg.outstanding:
            return
        self._close_segment(seg, delete=True)
        self._segments.remove(seg)
        del self._by_number[seg.n]

    def _close_segment(self, seg: _Segment, *, delete: bool) -> None:
        if seg.map is not None:
            seg.map.close()
            seg.map = None
        if not delete:
            os.ftruncate(seg.fd, seg.size)  # left for an adopter: give back the unused space
        os.close(seg.fd)
        if seg.ack_fd is not None:
            os.close(seg.ack_fd)
            seg.ack_fd = None
        if delete:  # the records first: an ack file without its segment means nothing
            _unlink(self._path(self._token, seg.n, "seg"))
            _unlink(self._path(self._token, seg.n, "ack"))

    def _path(self, token: str, n: int, kind: str) -> Path:
        return self._dir / f"{token}.{n:06d}.{kind}"

    # --- adoption -------------------------------------------------------------------------------------

    def _adopt_orphans(self) -> None:
        journals: dict[str, list[int]] = {}
        for name in os.listdir(self._dir):
            match = _NAME.match(name)
            if match is None or match["token"] == self._token:
                continue
            segments = journals.setdefault(match["token"], [])
            if match["kind"] == "seg":
                segments.append(int(match["n"]))
        for token, numbers in sorted(journals.items()):
            self._adopt(token, sorted(numbers))

    def _adopt(self, token: str, numbers: list[int]) -> None:
        lock_path = self._dir / f"{token}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # its owner is alive (or another process is adopting it)
            for n in numbers:
                seg_path = self._path(token, n, "seg")
                for body in _unfinished(seg_path, self._path(token, n, "ack"), self.stats):
                    self.put(body)
                    self.stats.adopted += 1
            for n in numbers:
                _unlink(self._path(token, n, "seg"))
                _unlink(self._path(token, n, "ack"))
            _unlink(lock_path)
        finally:
            os.close(fd)


def _unfinished(seg_path: Path, ack_path: Path, stats: SpoolStats) -> Iterator[bytes]:
    """The intact records of a segment that no ack range covers."""
    try:
        data = seg_path.read_bytes()
    except FileNotFoundError:
        return
    try:
        raw = ack_path.read_bytes()
    except FileNotFoundError:
        raw = b""
    acked = sorted(_ACK.iter_unpack(raw[: len(raw) - len(raw) % _ACK.size]))
    i = 0
    pos = 0
    while pos < len(data) and data[pos] != 0:  # the allocated rest of a segment is NUL bytes
        nl = data.find(b"\n", pos)
        if nl < 0:
            stats.corrupt += 1  # torn last record
            return
        while i < len(acked) and acked[i][1] <= pos:
            i += 1
        covered = i < len(acked) and acked[i][0] <= pos
        if not covered:
            body = data[pos + 8 : nl]
            if data[pos : pos + 8] == b"%08x" % zlib.crc32(body):
                yield body
            else:
                stats.corrupt += 1
        pos = nl + 1


def _ranges(events: Sequence[Event]) -> list[tuple[int, int, int]]:
    """The events' records as (segment, start, end) byte ranges, adjacent records merged."""
    spans = sorted(e.where for e in events if e.where is not None)
    ranges: list[tuple[int, int, int]] = []
    for n, offset, length in spans:
        if ranges and ranges[-1][0] == n and ranges[-1][2] == offset:
            ranges[-1] = (n, ranges[-1][1], offset + length)
        else:
            ranges.append((n, offset, offset + length))
    return ranges


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
