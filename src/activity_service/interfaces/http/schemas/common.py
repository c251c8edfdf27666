"""Shapes shared by every route: problem details, health, and how times are read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, PlainValidator

from activity_service.domain.errors import FieldError


def iso_string(value: object) -> object:
    """Times come as ISO-8601 strings with a date and a time (``2026-11-26T10:00:00Z``, an offset or
    none, fractions optional) only. A number, or a string of digits, is ambiguous (seconds?
    milliseconds?), and a bare date is not an instant: the parser behind would take both. Checked by
    position rather than with a regular expression: this runs for every time of every event."""
    if (
        not isinstance(value, str)
        or len(value) < 16
        or value[4] != "-"
        or value[7] != "-"
        or value[10] not in "Tt "
        or value[13] != ":"
    ):
        raise ValueError("must be an ISO-8601 date-time string, e.g. 2026-11-26T10:00:00Z")
    return value


def _date_or_datetime(value: object) -> datetime | date:
    """A bare ``YYYY-MM-DD`` is a date (a whole day); anything else must be an ISO-8601 date-time."""
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return date.fromisoformat(value)
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                parsed.astimezone(UTC)  # raises OverflowError when it has no UTC equivalent
            return parsed
        except (ValueError, OverflowError):
            pass
    raise ValueError("must be an ISO-8601 date (2026-11-26) or date-time (2026-11-26T10:00:00Z)")


IsoDateTime = Annotated[datetime, BeforeValidator(iso_string)]
IsoDateOrDateTime = Annotated[datetime | date, PlainValidator(_date_or_datetime, json_schema_input_type=str)]

EXAMPLE_ID = "01936a8e-5f7c-7d3e-9a1b-2c4d6e8f0a1b"


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] | None = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    service: str = "activity-service"


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description="`ok` or `unavailable` for each dependency (why: in the log).")


def field_errors(raw: Sequence[Any]) -> list[FieldError]:
    """Pydantic's errors as ``{field, message}``, the field a dotted path without the ``body``/``query``
    prefix (``metadata.a``, ``activities[3].userId``)."""
    errors = []
    for error in raw:
        location = [p for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
        path = ""
        for part in location:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = str(error.get("msg", "is invalid"))
        if error.get("type") == "extra_forbidden":
            message = "is not a known field"
        elif error.get("type") == "json_invalid":  # the body as a whole: its location is a byte offset
            path = ""
            message = f"is not valid JSON: {error.get('ctx', {}).get('error', 'unreadable')}"
        errors.append(FieldError(path or "body", message))
    return errors
