"""Log lines in blocks (BufferedStreamHandler) and the access log the app writes itself: an error is
written at once with every line before it, in order; other lines at most FLUSH_SECONDS late; the access
line is uvicorn's, word for word, with the request id, its fields and no credential."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from collections.abc import Iterator

import pytest

from activity_service.infrastructure import logging as service_logging
from activity_service.infrastructure.logging import (
    FLUSH_SECONDS,
    BufferedStreamHandler,
    JsonFormatter,
    access,
    configure_logging,
    request_id,
)

SCOPE = {
    "client": ("203.0.113.7", 5123),
    "method": "POST",
    "path": "/api/activities/batch",
    "query_string": b"key=pk-secret&x=1",
    "http_version": "1.1",
}


class Stderr(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def isatty(self) -> bool:
        return False


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stderr]:
    stream = Stderr()
    monkeypatch.setattr(sys, "stderr", stream)
    root, uvicorn_access = logging.getLogger(), logging.getLogger("uvicorn.access")
    saved = root.handlers[:], root.level, service_logging._handler, uvicorn_access.level
    # An in-process uvicorn (another test) sets its access logger's level: this test says its own.
    uvicorn_access.setLevel(logging.NOTSET)
    try:
        configure_logging("INFO", "json")
        yield stream
    finally:
        root.handlers[:], level, service_logging._handler, access_level = saved
        root.setLevel(level)
        uvicorn_access.setLevel(access_level)


def _lines(stream: Stderr) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_info_lines_wait_and_an_error_brings_them_out_in_order(stderr: Stderr) -> None:
    log = logging.getLogger("test.lines")
    handler = service_logging._handler
    assert handler is not None and handler.lock is not None
    # Held (it is re-entrant: logging here still writes) so that the handler's flusher, which writes
    # whatever waits FLUSH_SECONDS after the first line, cannot on a machine slow enough to take that long.
    with handler.lock:
        for n in range(3):
            log.info("line %d", n)
        assert stderr.getvalue() == "", "INFO lines are not written one by one"
        log.error("broke")
    assert [e["message"] for e in _lines(stderr)] == ["line 0", "line 1", "line 2", "broke"]
    assert stderr.writes == 1, "one write for the block"


def test_a_quiet_line_is_written_within_flush_seconds(stderr: Stderr) -> None:
    logging.getLogger("test.lines").info("alone")
    deadline = time.monotonic() + FLUSH_SECONDS * 10
    while not stderr.getvalue() and time.monotonic() < deadline:
        time.sleep(FLUSH_SECONDS / 4)
    assert [e["message"] for e in _lines(stderr)] == ["alone"]


def test_a_full_buffer_is_written_without_waiting(stderr: Stderr) -> None:
    log = logging.getLogger("test.lines")
    for _ in range(service_logging.FLUSH_BYTES // 50):
        log.info("x" * 60)
    assert stderr.getvalue(), "past FLUSH_BYTES the block goes out"


def test_the_access_line_is_uvicorns_with_fields_and_no_key(stderr: Stderr) -> None:
    token = request_id.set("req-7")
    try:
        access(SCOPE, 202, 0.0042)
    finally:
        request_id.reset(token)
    logging.getLogger("test.lines").warning("flush")
    entry = _lines(stderr)[0]
    target = "/api/activities/batch?key=[redacted]&x=1"
    assert entry["logger"] == "uvicorn.access" and entry["level"] == "INFO"
    assert entry["message"] == f'203.0.113.7:5123 - "POST {target} HTTP/1.1" 202'
    assert (entry["request_id"], entry["method"], entry["path"], entry["status"]) == (
        "req-7",
        "POST",
        target,
        202,
    )
    assert entry["duration_ms"] == 4.2
    assert "pk-secret" not in stderr.getvalue()


def test_unconfigured_the_access_line_goes_through_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.access")  # whatever level another test left
    saved = service_logging._handler
    service_logging._handler = None
    try:
        access(SCOPE, 400, 0.001)
    finally:
        service_logging._handler = saved
    [record] = [r for r in caplog.records if r.name == "uvicorn.access"]
    assert "pk-secret" not in record.getMessage() and record.getMessage().endswith(" 400")


def test_a_broken_stderr_never_raises_into_the_caller() -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("gone")

    handler = BufferedStreamHandler(Broken())
    handler.setFormatter(JsonFormatter())
    record = logging.makeLogRecord({"name": "x", "levelno": logging.ERROR, "levelname": "ERROR", "msg": "m"})
    handler.emit(record)  # must not raise
