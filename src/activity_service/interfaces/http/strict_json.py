"""Request bodies as strict JSON (RFC 8259 with I-JSON's rules, RFC 7493): UTF-8 only, no NaN or Infinity
and no number beyond a double, no lone surrogate, no duplicate key, no integer beyond 64 bits.

The stdlib parser FastAPI uses accepts every one of those (UTF-16/32 bodies, ``NaN``, ``1e400`` as
infinity, the last of two duplicate keys, ``"\\ud800"``, which then fails encoding with a 500). orjson
refuses most of them itself, and is faster; what it lets through is caught with two cheap checks on the
bytes, and only a suspicious body is parsed a second time, slowly and exactly:

- duplicate keys, which orjson drops silently: outside strings a colon only separates a key from its
  value, so a body whose colons number more than those of its own re-encoding lost a key. Inside
  strings both hold the same colons, unless the body escapes one (``\\u003a``): then the slow parse.
- integers beyond 64 bits, which orjson reads as floats: such a float is at least 9.2e18, which orjson
  writes with an exponent (``e+``); only then are the bytes searched for a 19-digit run, and only such a
  run leads to the slow parse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

_LONG_DIGITS = re.compile(rb"\d{19}")
_INT_RANGE = range(-(2**63), 2**64)  # what orjson reads as an integer; the domain bounds metadata to int64


class InvalidJson(json.JSONDecodeError):
    """A JSONDecodeError, so that FastAPI answers it as any unreadable body (400, ``json_invalid``)."""


def loads(raw: bytes) -> Any:
    """The JSON value of ``raw``; raises InvalidJson saying what is wrong with it."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(exc.msg, exc.doc if isinstance(exc.doc, str) else "", exc.pos) from None
    canonical = orjson.dumps(value)
    if raw.count(b":") != canonical.count(b":") or (b"e+" in canonical and _LONG_DIGITS.search(raw)):
        _exactly(raw)
    elif b"\\u003" in raw:  # an escaped colon could hide a duplicate from the count
        _exactly(raw)
    return value


def _exactly(raw: bytes) -> None:
    """Parses again with the standard library, refusing what orjson does not (slow; rarely needed)."""
    try:
        json.loads(raw.decode(), object_pairs_hook=_no_duplicates, parse_int=_int64, parse_constant=_refused)
    except InvalidJson:
        raise
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, a hook's refusal
        raise InvalidJson(str(exc), "", 0) from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJson(f"duplicate key {key!r}", "", 0)
            seen.add(key)
    return found


def _int64(text: str) -> int:
    value = int(text)
    if value not in _INT_RANGE:
        shown = text if len(text) <= 24 else f"{text[:24]}..."
        raise InvalidJson(f"integer {shown} does not fit in 64 bits", "", 0)
    return value


def _refused(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number", "", 0)


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is read with ``loads`` (FastAPI's documented custom-Request pattern)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
