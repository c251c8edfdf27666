"""Readiness: can this process do its job right now?"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

OK = "ok"


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: Mapping[str, str]
    """Each dependency's name and ``"ok"``, or why it failed."""

    @property
    def ready(self) -> bool:
        return all(result == OK for result in self.checks.values())


class CheckReadiness:
    """Ready when every dependency answers its ping within the timeout; otherwise name those that did not."""

    def __init__(self, checks: Mapping[str, Callable[[], Awaitable[None]]], timeout_seconds: float) -> None:
        self._checks = dict(checks)
        self._timeout = timeout_seconds

    async def execute(self) -> Readiness:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        return Readiness(checks=dict(zip(names, results, strict=True)))

    async def _run(self, check: Callable[[], Awaitable[None]]) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                await check()
        except TimeoutError:
            return f"no answer within {self._timeout:g}s"
        except Exception as exc:  # any failure of a dependency means "not ready", with its reason
            return f"{type(exc).__name__}: {exc}"[:300]
        return OK
