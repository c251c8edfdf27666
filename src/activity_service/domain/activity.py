"""Activity: one thing a user did, as the service accepts, transports and stores it."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from activity_service.domain.errors import FieldError, InvalidActivity
from activity_service.domain.ids import event_id_problem
from activity_service.domain.metadata import metadata_problems
from activity_service.domain.times import to_millis

MAX_USER_ID_LENGTH = 256
MAX_ACTION_LENGTH = 128
# Device clocks drift, so a little future is normal; a timestamp further ahead than this is a bug.
MAX_FUTURE_SKEW = timedelta(hours=24)
# No event of this service predates it: earlier times are broken clocks (or year 1 from a zero value).
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
# The most a client's clock may be corrected by (sentAt against receivedAt): more is a clock so broken
# that its timestamps mean nothing, and would let one request move its event anywhere in time.
MAX_CLOCK_CORRECTION = timedelta(days=7)
TRACE_ID = re.compile(r"[0-9a-f]{32}")
MAX_IP_LENGTH = 64
DEFAULT_TENANT = "default"
# Tenants and key names: never a '/', so "tenant/id" names one event unambiguously (ids have none either).
NAME = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
_ZERO = timedelta(0)
# Characters that print as nothing yet pass str.isprintable() (they are letters or marks, not Cf): Unicode's
# Default_Ignorable_Code_Point outside Cf (Hangul fillers, the combining grapheme joiner, Khmer inherent
# vowels, Mongolian and other variation selectors) and the braille blank. "u" and "u\ufe0f" would be two
# users that look the same; U+FE0E/U+FE0F stay allowed after a symbol (the emoji in "\u2764\ufe0f").
_INVISIBLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0d\uffa0\U000e0100-\U000e01ef]"
)
_PRESENTATION = re.compile("[\ufe0e\ufe0f]")


def _hides_a_selector(value: str) -> bool:
    """A text/emoji presentation selector anywhere but after a symbol or before a keycap's U+20E3."""
    return any(
        i == 0 or (unicodedata.category(value[i - 1]) != "So" and value[i + 1 : i + 2] != "\u20e3")
        for i in (found.start() for found in _PRESENTATION.finditer(value))
    )


JsonObject = Mapping[str, Any]
EventKey = tuple[str, str]
"""(tenant, event id): an event id is unique within its tenant only."""


@dataclass(frozen=True, slots=True)
class Activity:
    """An accepted activity.

    Invariants: ``id`` is a valid event id; ``user_id`` and ``action`` are non-empty, bounded, printable
    text (no control, bidi, zero-width or other format characters); every time is timezone-aware UTC;
    ``timestamp`` is not before EARLIEST_TIMESTAMP nor more than MAX_FUTURE_SKEW after ``received_at``;
    ``sent_at`` (the client's clock when it sent the event) is within MAX_CLOCK_CORRECTION of
    ``received_at``; ``metadata`` is a JSON object that every supported store can hold (see
    domain.metadata); ``tenant`` and ``source`` are names (letters, digits, ``._:@-``, at most 64).
    ``timestamp`` is the effective event time; ``original_timestamp`` keeps the client's own value when
    it was corrected for clock skew with ``sent_at``.

    ``tenant`` owns it: its id is unique within the tenant, and only the tenant's keys read it. ``source``
    names the API key that wrote it. ``fingerprint`` (content_fingerprint) identifies what the client sent,
    for an event whose id the client chose: a resend with the same id and the same content is the same
    event; with other content it is a conflict, never silently dropped nor silently replaced.
    """

    id: str
    user_id: str
    action: str
    timestamp: datetime
    received_at: datetime
    metadata: JsonObject = field(default_factory=dict)
    ip_address: str | None = None
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    trace_id: str | None = None
    """The W3C trace id of the request that carried it, when tracing is on (32 lowercase hex digits)."""
    tenant: str = DEFAULT_TENANT
    source: str | None = None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        errors = _problems(self)
        if errors:
            raise InvalidActivity(errors)

    @property
    def key(self) -> EventKey:
        """What identifies it: its id within its tenant."""
        return (self.tenant, self.id)

    @classmethod
    def restore(cls, **stored: Any) -> Activity:
        """An activity as a store kept it, rebuilt without checking the input rules again: they held when
        it was accepted, and they may have been tightened since (an old event must still read back).
        Takes the fields by name; a missing optional one gets its default, an unknown name is an error."""
        unknown = stored.keys() - _FIELD_NAMES
        if unknown:
            raise TypeError(f"Activity has no field {', '.join(sorted(unknown))}")
        activity = object.__new__(cls)
        for f in _FIELDS:
            if f.name in stored:
                value = stored[f.name]
            elif f.default is not MISSING:
                value = f.default
            elif f.default_factory is not MISSING:
                value = f.default_factory()
            else:
                raise TypeError(f"a stored activity needs {f.name}")
            object.__setattr__(activity, f.name, value)
        return activity

    @classmethod
    def record(
        cls,
        *,
        id: str,
        user_id: str,
        action: str,
        received_at: datetime,
        timestamp: datetime | None = None,
        sent_at: datetime | None = None,
        metadata: JsonObject | None = None,
        ip_address: str | None = None,
        trace_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
        source: str | None = None,
        chosen_id: bool = False,
    ) -> Activity:
        """Build an activity from what a client sent and when it arrived.

        Without ``timestamp`` the event happened when it was received. With both ``timestamp`` and
        ``sent_at`` the client's clock is assumed off by ``sent_at - received_at``, so the effective
        time is ``received_at - (sent_at - timestamp)`` and the client's value is kept as
        ``original_timestamp``. ``chosen_id``: the client chose ``id``, so the content is fingerprinted
        (a resend must match it).
        """
        received_at = _utc(received_at, "receivedAt")
        original = _utc(timestamp, "timestamp") if timestamp is not None else None
        sent = _utc(sent_at, "sentAt") if sent_at is not None else None
        effective = original if original is not None else received_at
        if original is not None and sent is not None:
            try:
                effective = received_at - (sent - original)
            except OverflowError:
                raise InvalidActivity([FieldError("sentAt", "is too far from timestamp")]) from None
        return cls(
            id=id,
            user_id=user_id,
            action=action,
            timestamp=effective,
            received_at=received_at,
            metadata={} if metadata is None else metadata,
            ip_address=ip_address,
            original_timestamp=original if sent is not None else None,
            sent_at=sent,
            trace_id=trace_id,
            tenant=tenant,
            source=source,
            fingerprint=content_fingerprint(user_id, action, metadata, original) if chosen_id else None,
        )


def content_fingerprint(
    user_id: str, action: str, metadata: JsonObject | None, timestamp: datetime | None
) -> str:
    """What the client said happened, as a short digest: who, what, the metadata, and its own time (when
    it gave one; the server's receipt time differs on every resend). Equal content, equal fingerprint."""
    content = [user_id, action, metadata or {}, None if timestamp is None else timestamp.isoformat()]
    try:
        canonical = _CANONICAL.encode(content)
    except (TypeError, ValueError):  # not JSON (the invariants refuse it): nothing meaningful to hash
        canonical = repr(content)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# What json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False) builds on every call, built
# once: the same bytes (stored fingerprints must stay comparable), at half the cost per event.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)

_FIELDS = fields(Activity)
_FIELD_NAMES = frozenset(f.name for f in _FIELDS)


def _utc(value: datetime, field: str) -> datetime:
    """Naive times are taken as UTC; aware ones are converted; precision is cut to milliseconds."""
    tz = value.tzinfo
    if tz is UTC and not value.microsecond % 1000:
        return value  # already so (a batch's shared receivedAt): no copies
    if tz is not None and tz is not UTC and tz.utcoffset(value) == _ZERO:
        # UTC by another tzinfo (a parsed "Z" comes as the parser's own zero offset): one copy, not two
        return value.replace(tzinfo=UTC, microsecond=value.microsecond // 1000 * 1000)
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 has no UTC equivalent
        raise InvalidActivity([FieldError(field, "is out of the representable range")]) from None
    return to_millis(utc)


def _problems(a: Activity) -> list[FieldError]:
    errors: list[FieldError] = []
    if (problem := event_id_problem(a.id)) is not None:
        errors.append(FieldError("id", problem))
    _text_problem(errors, "userId", a.user_id, MAX_USER_ID_LENGTH)
    _text_problem(errors, "action", a.action, MAX_ACTION_LENGTH)
    for name, when in (
        ("timestamp", a.timestamp),
        ("receivedAt", a.received_at),
        ("originalTimestamp", a.original_timestamp),
        ("sentAt", a.sent_at),
    ):
        if when is not None and when.tzinfo is not UTC and when.utcoffset() != _ZERO:
            errors.append(FieldError(name, "must be a UTC time"))
    if a.ip_address is not None and (not isinstance(a.ip_address, str) or len(a.ip_address) > MAX_IP_LENGTH):
        errors.append(FieldError("ipAddress", f"must be a string of at most {MAX_IP_LENGTH} characters"))
    if a.trace_id is not None and (not isinstance(a.trace_id, str) or TRACE_ID.fullmatch(a.trace_id) is None):
        errors.append(FieldError("traceId", "must be 32 lowercase hexadecimal digits"))
    for name, value in (("tenant", a.tenant), ("source", a.source)):
        if value is not None and (not isinstance(value, str) or NAME.fullmatch(value) is None):
            errors.append(FieldError(name, "must be a name: letters, digits and ._:@- (at most 64)"))
    if a.fingerprint is not None and (not isinstance(a.fingerprint, str) or len(a.fingerprint) > 64):
        errors.append(FieldError("fingerprint", "must be a digest of at most 64 characters"))
    if not errors:
        _time_problems(errors, a)
    errors.extend(metadata_problems(a.metadata))
    return errors


def _time_problems(errors: list[FieldError], a: Activity) -> None:
    if a.timestamp - a.received_at > MAX_FUTURE_SKEW:
        hours = int(MAX_FUTURE_SKEW.total_seconds() // 3600)
        errors.append(FieldError("timestamp", f"must not be more than {hours} hours in the future"))
    elif a.timestamp < EARLIEST_TIMESTAMP:
        errors.append(FieldError("timestamp", f"must not be before {EARLIEST_TIMESTAMP.date().isoformat()}"))
    if a.sent_at is not None and abs(a.sent_at - a.received_at) > MAX_CLOCK_CORRECTION:
        errors.append(
            FieldError(
                "sentAt",
                f"is more than {MAX_CLOCK_CORRECTION.days} days from the time it was received: the "
                "client's clock cannot be corrected by that much",
            )
        )


def _text_problem(errors: list[FieldError], name: str, value: str, limit: int) -> None:
    if type(value) is str and value.isascii() and 0 < len(value) <= limit and value.isprintable():
        if not value.isspace():
            return  # the common case, in C: printable ASCII holds no NUL, control, invisible or mark
    if not isinstance(value, str) or not value or value.isspace():
        errors.append(FieldError(name, "must be a non-empty string"))
    elif len(value) > limit:
        errors.append(FieldError(name, f"must be at most {limit} characters"))
    elif "\x00" in value:
        errors.append(FieldError(name, "must not contain NUL characters"))
    elif (
        not value.isprintable()  # C-fast; False for every Cc, Cf, Cs, Co, Cn, Zl, Zp, Zs but " "
        or _INVISIBLE.search(value)
        or ("\ufe0e" in value or "\ufe0f" in value)
        and _hides_a_selector(value)
        or unicodedata.category(value[0])[0] == "M"  # a mark with nothing to mark
    ):
        errors.append(
            FieldError(
                name,
                "must not contain control, bidi, zero-width or other invisible characters "
                "(spaces other than U+0020 included)",
            )
        )
