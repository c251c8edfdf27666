"""How times are written on the wire: ISO-8601, UTC, millisecond precision (what BSON dates keep)."""

from __future__ import annotations

from datetime import UTC, datetime


def to_iso(value: datetime) -> str:
    """``2026-11-26T10:00:00.000Z``: always four-digit years (strftime's ``%Y`` does not pad year 5)."""
    v = value if value.tzinfo is UTC else value.astimezone(UTC)
    # Runs twice an event: %-formatting measured 0.55 µs, isoformat(timespec=...) 0.85, an f-string 1.0.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031
        v.year,
        v.month,
        v.day,
        v.hour,
        v.minute,
        v.second,
        v.microsecond // 1000,
    )


def from_iso(value: str) -> datetime:
    """Parse an ISO-8601 time; a time without an offset is taken as UTC. Raises ValueError when it is not
    one, or has no UTC equivalent (``9999-12-31T23:59:59-01:00`` is in the year 10000)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} has no UTC equivalent") from None


def to_millis(value: datetime) -> datetime:
    """Drop sub-millisecond precision so that a stored time reads back equal."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
