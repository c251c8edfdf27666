"""What metadata may hold: any JSON object that every supported store can keep as it is.

Keys that start with ``$`` or contain ``.`` or NUL break MongoDB-compatible stores (they read as
operators or paths), so they are refused at any depth; PostgreSQL's jsonb cannot hold NUL (``\u0000``)
in a string at all, so string values may not contain it either. Depth and integer range are bounded too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from activity_service.domain.errors import FieldError

MAX_METADATA_DEPTH = 8
MAX_METADATA_KEY_LENGTH = 256


def metadata_problems(metadata: object) -> list[FieldError]:
    if type(metadata) is not dict and not isinstance(metadata, Mapping):  # the ABC check is slow
        return [FieldError("metadata", "must be a JSON object")]
    if _plain(metadata, 1):
        return []
    errors: list[FieldError] = []
    _walk(metadata, "metadata", 1, errors)
    return errors


def _plain(value: Any, depth: int) -> bool:
    """True when ``value`` is clean, checked without building any path: the common case, on every
    event. Only exact JSON types pass; anything else (a problem, or a Mapping that is not a dict) goes
    to ``_walk``, which names every offending path."""
    kind = type(value)
    if kind is str:
        return "\x00" not in value
    if kind is float or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-(2**63) <= value < 2**63)
    if depth > MAX_METADATA_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if (
                type(key) is not str
                or not key
                or len(key) > MAX_METADATA_KEY_LENGTH
                or key[0] == "$"
                or "." in key
                or "\x00" in key
            ):
                return False
            # scalars checked here rather than by a call each (most metadata is flat)
            item_kind = type(item)
            if item_kind is str:
                if "\x00" in item:
                    return False
            elif item_kind is int:
                if not -(2**63) <= item < 2**63:
                    return False
            elif not (item_kind is float or item_kind is bool or item is None or _plain(item, depth + 1)):
                return False
        return True
    if kind is list:
        return all(_plain(item, depth + 1) for item in value)
    return False


def _walk(value: Any, path: str, depth: int, errors: list[FieldError]) -> None:
    if isinstance(value, Mapping):
        if depth > MAX_METADATA_DEPTH:
            errors.append(FieldError(path, f"nests deeper than {MAX_METADATA_DEPTH} levels"))
            return
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append(FieldError(path, "keys must be strings"))
                continue
            problem = _key_problem(key)
            if problem is not None:
                errors.append(FieldError(f"{path}.{key}", problem))
                continue
            _walk(item, f"{path}.{key}", depth + 1, errors)
    elif isinstance(value, list):
        if depth > MAX_METADATA_DEPTH:
            errors.append(FieldError(path, f"nests deeper than {MAX_METADATA_DEPTH} levels"))
            return
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", depth + 1, errors)
    elif isinstance(value, str):
        if "\x00" in value:
            errors.append(FieldError(path, "strings must not contain NUL characters (\\u0000)"))
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        return
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:  # not `in range(...)`: an int subclass makes that a scan
            errors.append(FieldError(path, "integers must fit in 64 bits"))
    else:
        errors.append(FieldError(path, f"is not a JSON value ({type(value).__name__})"))


def _key_problem(key: str) -> str | None:
    if not key:
        return "keys must not be empty"
    if len(key) > MAX_METADATA_KEY_LENGTH:
        return f"keys must be at most {MAX_METADATA_KEY_LENGTH} characters"
    if key.startswith("$"):
        return "keys must not start with '$'"
    if "." in key:
        return "keys must not contain '.'"
    if "\x00" in key:
        return "keys must not contain NUL characters"
    return None
