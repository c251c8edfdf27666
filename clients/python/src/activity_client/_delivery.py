"""What to do with the answer to one batch POST: a pure function of the answer, shared by both clients.

| Answer | What happens |
| ------ | ------------ |
| 202 | items marked accepted are delivered, items marked rejected refused (on_error) |
| 400 with per-item results | nothing accepted: rejected items are refused, any other is sent again |
| 400/415 without results, to a gzip body | no gzip there: sent again uncompressed, and from then on |
| 413 | the batch is split in halves, each sent; a single event is refused (too_large) |
| 429, 5xx, no answer (refused, reset, timeout) | sent again, same ids, after max(Retry-After, backoff) |
| 401, 403 | sent again with backoff for ``auth_retry_time``, then refused (unauthorized) |
| any other status | refused (client_error): resending the same request cannot succeed |

Backoff is exponential with full jitter: a uniform delay in [0, min(max_backoff, base * 2^attempt)];
a Retry-After (seconds or an HTTP date, capped at 300 s) is a floor on it, and on 429 and 503 it also
pauses every sender of the client, since it describes the server, not the batch.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from activity_client._events import Event

Reason = Literal["rejected", "too_large", "unauthorized", "client_error", "closed"]

MAX_RETRY_AFTER = 300.0
# A 202 body that starts {"accepted": n, "rejected": 0 (the server's key order): nothing to report.
_ALL_ACCEPTED = re.compile(rb'\{\s*"accepted"\s*:\s*\d+\s*,\s*"rejected"\s*:\s*0\s*[,}]')


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """An event that will not be delivered, as given to ``on_error``.

    ``reason``: ``rejected`` (the server found it invalid; ``errors`` says why), ``too_large`` (413 even
    alone), ``unauthorized`` (401/403 for longer than ``auth_retry_time``), ``client_error`` (another
    answer that resending cannot change), ``closed`` (not confirmed when close() gave up, without a
    spool; it may or may not have been stored)."""

    event_id: str
    reason: Reason
    status: int | None
    message: str
    errors: tuple[FieldProblem, ...] = ()


@dataclass(slots=True)
class Batch:
    events: list[Event]
    attempts: int = 0
    """Failed attempts so far (drives the backoff)."""
    auth_failing_since: float | None = None
    due: float = 0.0
    """time.monotonic() before which it is not sent (its backoff)."""
    first_seq: int = field(init=False)

    def __post_init__(self) -> None:
        self.first_seq = min(e.seq for e in self.events)


@dataclass(slots=True)
class Verdict:
    finished: list[Event] = field(default_factory=list)
    """Events that need no more sending: the accepted ones and the refused ones."""
    accepted: int = 0
    refusals: list[Refusal] = field(default_factory=list)
    resend: list[Batch] = field(default_factory=list)
    """Batches to send next, in order (the same batch after a failure, or the halves after a 413)."""
    delay: float = 0.0
    """Seconds to wait before the first of ``resend``."""
    pause_all: float = 0.0
    """Seconds every sender of the client should wait (the server's Retry-After on 429/503)."""
    stop_gzip: bool = False
    problem: str | None = None
    """Why an attempt failed, for the log."""


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 0.1
    cap: float = 10.0

    def delay(self, attempts: int) -> float:
        return random.uniform(0.0, min(self.cap, self.base * 2.0 ** min(attempts, 32)))


def retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def judge(
    batch: Batch,
    status: int,
    retry_after: str | None,
    body: bytes,
    *,
    gzipped: bool,
    backoff: Backoff,
    auth_retry_time: float,
    now: float,
) -> Verdict:
    events = batch.events
    if status == 202:
        if _ALL_ACCEPTED.match(body):  # the usual answer: no need to parse one result per item
            return Verdict(finished=list(events), accepted=len(events))
        return _accepted(events, _results(body))
    results = _results(body)
    if status in (400, 415) and gzipped and results is None:
        return Verdict(resend=[batch], stop_gzip=True, problem=f"{status} to a gzip body")
    if status == 400 and results is not None:
        return _refused_items(batch, results, status)
    if status == 413:
        if len(events) > 1:
            half = len(events) // 2
            return Verdict(resend=[Batch(events[:half]), Batch(events[half:])], problem="413: split")
        return _refuse(events, "too_large", status, _detail(body) or "the event is too large")
    if status in (401, 403):
        since = batch.auth_failing_since if batch.auth_failing_since is not None else now
        if now - since >= auth_retry_time:
            return _refuse(events, "unauthorized", status, _detail(body) or "the API key was refused")
        batch.auth_failing_since = since
        return _again(batch, backoff, None, f"{status}: {_detail(body)}")
    if status == 429 or status >= 500:
        pause = status in (429, 503)
        return _again(
            batch, backoff, retry_after_seconds(retry_after), f"{status}: {_detail(body)}", pause=pause
        )
    return _refuse(events, "client_error", status, _detail(body) or f"unexpected answer {status}")


def failed(batch: Batch, problem: str, backoff: Backoff) -> Verdict:
    """No answer: the connection was refused or reset, or the request timed out."""
    return _again(batch, backoff, None, problem)


def _again(
    batch: Batch, backoff: Backoff, retry_after: float | None, problem: str, *, pause: bool = False
) -> Verdict:
    delay = backoff.delay(batch.attempts)
    batch.attempts += 1
    if retry_after is not None:
        delay = max(delay, retry_after)
    return Verdict(
        resend=[batch], delay=delay, pause_all=(retry_after or 0.0) if pause else 0.0, problem=problem
    )


def _accepted(events: list[Event], results: dict[int, dict[str, Any]] | None) -> Verdict:
    verdict = Verdict(finished=list(events))
    for index, event in enumerate(events):
        item = results.get(index) if results is not None else None
        if item is not None and item.get("status") == "rejected":
            verdict.refusals.append(_rejection(event, item, 202))
        else:  # accepted, or a 202 whose body says nothing about it: the server took the batch
            verdict.accepted += 1
    return verdict


def _refused_items(batch: Batch, results: dict[int, dict[str, Any]], status: int) -> Verdict:
    verdict = Verdict()
    again: list[Event] = []
    for index, event in enumerate(batch.events):
        item = results.get(index)
        if item is not None and item.get("status") == "rejected":
            verdict.finished.append(event)
            verdict.refusals.append(_rejection(event, item, status))
        else:  # a 400 accepts nothing: an item it did not reject was not stored
            again.append(event)
    if again:
        verdict.resend.append(Batch(again))
    return verdict


def _rejection(event: Event, item: dict[str, Any], status: int) -> Refusal:
    raw = item.get("errors")
    errors = tuple(
        FieldProblem(str(e.get("field", "")), str(e.get("message", "")))
        for e in (raw if isinstance(raw, list) else [])
        if isinstance(e, dict)
    )
    message = "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in errors) or "rejected"
    return Refusal(event.id, "rejected", status, message, errors)


def _refuse(events: Sequence[Event], reason: Reason, status: int | None, message: str) -> Verdict:
    return Verdict(finished=list(events), refusals=[Refusal(e.id, reason, status, message) for e in events])


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _results(body: bytes) -> dict[int, dict[str, Any]] | None:
    doc = _parse(body) if body else None
    raw = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(raw, list):
        return None
    return {r["index"]: r for r in raw if isinstance(r, dict) and isinstance(r.get("index"), int)}


def _detail(body: bytes) -> str:
    doc = _parse(body) if body else None
    if isinstance(doc, dict):
        return str(doc.get("detail") or doc.get("title") or "")
    return body[:200].decode("utf-8", "replace")
