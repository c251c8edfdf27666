"""Domain errors: one base class, mapped to HTTP once in interfaces/http."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One offending input field: a dotted path (``metadata.a.b``) and what is wrong with it."""

    field: str
    message: str


class DomainError(Exception):
    """Base of every error the domain and the use cases raise on purpose."""


class InvalidActivity(DomainError):
    """The input breaks an invariant of Activity; ``errors`` names every offending field."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in self.errors))


class ActivityNotFound(DomainError):
    def __init__(self, activity_id: str) -> None:
        self.activity_id = activity_id
        super().__init__(f"no activity with id {activity_id!r}")


class PublishUnavailable(DomainError):
    """The event log did not acknowledge in time (broker down or slow): nothing was accepted.

    ``retry_after`` is a hint in seconds for the client.
    """

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(reason)


class Overloaded(PublishUnavailable):
    """Too many events are already waiting for an acknowledgment in this process."""


class StoreUnavailable(DomainError):
    """The activity store could not be reached; the operation may be retried."""


class QueryTimedOut(StoreUnavailable):
    """A read ran past its time limit on the database and was stopped there; narrower filters or a cursor
    cost less, and the same read may pass when the database is less busy."""
