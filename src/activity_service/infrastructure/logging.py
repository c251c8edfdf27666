"""Logs: one JSON object per line (or plain text), with the request id, trace id and event id at hand.

The request id lives in a context variable set by the HTTP middleware; the trace id comes from the
current span; an event id is passed as ``extra={"event_id": ...}``.

Lines reach stderr in blocks (BufferedStreamHandler): a write per line was a syscall per request for
the access log alone. A WARNING or worse is written at once, with every line before it, so errors are
never late; other lines at most FLUSH_SECONDS late, and on exit. The access log (``access``) is written
straight into the same handler, without a LogRecord: it is the one line every request writes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote, unquote_plus

import orjson

from activity_service.domain.times import to_iso
from activity_service.infrastructure.observability.tracing import current_trace_id

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": to_iso(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (rid := request_id.get()) is not None:
            entry["request_id"] = rid
        if (tid := current_trace_id()) is not None:
            entry["trace_id"] = tid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()

    def access(self, message: str, fields: dict[str, Any]) -> str:
        """The line ``format`` would write for an INFO record of the access log."""
        entry: dict[str, Any] = {
            "time": to_iso(datetime.now(UTC)),
            "level": "INFO",
            "logger": ACCESS_LOGGER,
            "message": message,
        }
        if (rid := request_id.get()) is not None:
            entry["request_id"] = rid
        if (tid := current_trace_id()) is not None:
            entry["trace_id"] = tid
        entry.update(fields)
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = request_id.get()
        return f"{line} [request_id={rid}]" if rid else line

    def access(self, message: str, fields: dict[str, Any]) -> str:
        record = logging.makeLogRecord(
            {"name": ACCESS_LOGGER, "levelno": logging.INFO, "levelname": "INFO", "msg": message}
        )
        return self.format(record)


FLUSH_SECONDS = 0.2
FLUSH_BYTES = 64 * 1024


class BufferedStreamHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that writes in blocks: lines wait in memory until one is a WARNING or worse, or
    they pass FLUSH_BYTES, or FLUSH_SECONDS passed (a daemon thread flushes), or the process exits
    (logging.shutdown flushes every handler). A SIGKILL loses at most the last FLUSH_SECONDS of INFO
    lines, never an error written before it."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._bytes = 0
        self._flusher_pid = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write(line, urgent=record.levelno >= logging.WARNING)

    def write(self, line: str, urgent: bool = False) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._lines.append(line)
            self._bytes += len(line)
            if urgent or self._bytes >= FLUSH_BYTES:
                self._write_out()
        if self._flusher_pid != os.getpid():  # none yet, or a fork's parent has it
            self._flusher_pid = os.getpid()
            threading.Thread(target=self._flush_often, name="log-flusher", daemon=True).start()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_out()

    def _write_out(self) -> None:
        if not self._lines:
            return
        block = "\n".join(self._lines) + "\n"
        self._lines.clear()
        self._bytes = 0
        try:
            self.stream.write(block)
            self.stream.flush()
        except Exception:  # noqa: S110 (a closed or broken stderr: no channel is left to say so, and
            pass  # as logging's handlers, a log line never raises into the code that wrote it)

    def _flush_often(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()


ACCESS_LOGGER = "uvicorn.access"
_ACCESS = logging.getLogger(ACCESS_LOGGER)
_MESSAGE = '%s - "%s %s HTTP/%s" %d'
"""uvicorn's access-log line, which this one replaces word for word (log pipelines parse it)."""


def access(scope: Mapping[str, Any], status: int, seconds: float) -> None:
    """One access-log line for an answered request: uvicorn's message, plus ``method``, ``path``,
    ``status`` and ``duration_ms`` as fields in JSON; the target's credentials redacted."""
    if not _ACCESS.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    peer = f"{client[0]}:{client[1]}" if client else "-"
    target = quote(scope.get("path", ""))
    if query := scope.get("query_string"):
        target = redacted(f"{target}?{query.decode('ascii', 'replace')}")
    args = (peer, scope.get("method", ""), target, scope.get("http_version", "1.1"), status)
    handler = _handler
    formatter = handler.formatter if handler is not None else None
    if handler is None or not isinstance(formatter, JsonFormatter | TextFormatter):
        _ACCESS.info(_MESSAGE, *args)  # not configured by configure_logging (tests): the plain way
        return
    fields = {"method": args[1], "path": target, "status": status, "duration_ms": round(seconds * 1000, 3)}
    handler.write(formatter.access(_MESSAGE % args, fields))


_handler: BufferedStreamHandler | None = None


REDACTED = "[redacted]"
SECRET_PARAMETERS = frozenset({"key", "api_key", "apikey", "api-key", "token", "access_token"})
"""Query parameters that are, or may be, credentials (a publishable key: ``?key=``; the others are names
clients are known to put keys in by mistake), never written to a log: matched however they are cased or
percent-encoded."""


def redacted(target: str) -> str:
    """A request target (path and query) without the values of SECRET_PARAMETERS."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    parts = query.split("&")
    for i, part in enumerate(parts):
        name = part.split("=", 1)[0]
        if unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            parts[i] = f"{name}={REDACTED}"
    return f"{path}?{'&'.join(parts)}"


class RedactedTargets(logging.Filter):
    """uvicorn's access log writes each request's target with its query: an API key sent in it (a
    publishable one, or a secret one the API refuses) would land in the log. Its arguments are the
    client, the method, the target, the HTTP version and the status."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], redacted(args[2]), *args[3:])
        return True


def configure_logging(level: str, log_format: str) -> None:
    """Route every logger, uvicorn's access log included, through one handler on stderr.

    ``log_format`` ``auto`` writes text for a person at a terminal and JSON lines for a log collector
    (stderr not a TTY); ``json`` or ``text`` force one."""
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    # Neither formatter writes the caller's file, line and function, nor the thread's or process's name:
    # without these the logging module skips finding them for every record (a stack walk and three
    # lookups per access-log line), as its documentation's "Optimization" section suggests.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _handler
    handler = _handler = BufferedStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactedTargets) for f in access.filters):
        access.addFilter(RedactedTargets())
