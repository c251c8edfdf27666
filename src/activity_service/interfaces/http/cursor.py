"""The opaque cursor of a keyset walk: the last position returned and the filters it belongs to.

Not signed: a forged cursor can only move the walk to another position of the same typed sort key.
"""

from __future__ import annotations

import base64

import orjson

from activity_service.domain.errors import FieldError
from activity_service.domain.ids import EVENT_ID_PATTERN
from activity_service.domain.query import InvalidQuery, Position
from activity_service.domain.times import from_iso, to_iso


def encode_cursor(position: Position, fingerprint: str) -> str:
    raw = orjson.dumps({"t": to_iso(position.timestamp), "i": position.id, "f": fingerprint})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, fingerprint: str) -> Position:
    """Raises InvalidQuery when the token is not a cursor or was made for other filters."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position = Position(from_iso(data["t"]), data["i"])
        made_for = data["f"]
        if not EVENT_ID_PATTERN.fullmatch(position.id):  # every stored id has this shape
            raise ValueError(position.id)
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise InvalidQuery([FieldError("cursor", "is not a cursor this API returned")]) from None
    if made_for != fingerprint:
        raise InvalidQuery([FieldError("cursor", "was returned for other filters; start a new walk")])
    return position
