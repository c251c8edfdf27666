"""Logs: one JSON object per line (or plain text), with the request id, trace id and event id at hand.

The request id lives in a context variable set by the HTTP middleware; the trace id comes from the
current span; an event id is passed as ``extra={"event_id": ...}``.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

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


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = request_id.get()
        return f"{line} [request_id={rid}]" if rid else line


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
    handler = logging.StreamHandler(sys.stderr)
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
