"""What PostgreSQL does with the service's own statements: `EXPLAIN (ANALYZE, BUFFERS)` of exactly the SQL
the repository sends for a query, caught through the adapters' one seam, the pool they are given.

``ExplainingPool`` stands in for the asyncpg pool: every statement the adapter runs on it is run for real
(so the adapter works as in the service) and recorded with its parameters; ``explain`` then runs EXPLAIN
(ANALYZE, BUFFERS) of each recorded statement on the same connection (a warm cache, as a dashboard meets it).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

INDEX_SCAN = re.compile(r"Index(?: Only)? Scan(?: Backward)? using (\w+)")


class _Recording:
    def __init__(self, connection: asyncpg.Connection, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        self._connection = connection
        self._statements = statements

    async def fetch(self, sql: str, *args: Any, timeout: float | None = None) -> list[asyncpg.Record]:  # noqa: ASYNC109 (asyncpg's)
        self._statements.append((sql, args))
        return list(await self._connection.fetch(sql, *args, timeout=timeout))

    async def fetchrow(self, sql: str, *args: Any, timeout: float | None = None) -> asyncpg.Record | None:  # noqa: ASYNC109 (asyncpg's)
        self._statements.append((sql, args))
        return await self._connection.fetchrow(sql, *args, timeout=timeout)

    async def fetchval(self, sql: str, *args: Any, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (asyncpg's)
        self._statements.append((sql, args))
        return await self._connection.fetchval(sql, *args, timeout=timeout)


class _Acquired:
    def __init__(self, pool: ExplainingPool) -> None:
        self._pool = pool

    async def __aenter__(self) -> _Recording:
        return _Recording(self._pool.connection, self._pool.statements)

    async def __aexit__(self, *exc: object) -> None:
        return None


class ExplainingPool:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def acquire(self, timeout: float | None = None) -> _Acquired:
        return _Acquired(self)


async def explain(pool: ExplainingPool, call: Callable[[], Awaitable[Any]]) -> list[dict[str, Any]]:
    """Runs ``call`` (an adapter method on ``pool``), then EXPLAIN (ANALYZE, BUFFERS) of every statement it
    sent: the SQL, the plan's text, its execution time, and the first node's shape."""
    pool.statements = []
    await call()
    plans = []
    for sql, args in pool.statements:
        rows = await pool.connection.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
        lines = [r[0] for r in rows]
        executed = next((ln for ln in lines if ln.startswith("Execution Time")), "")
        found = re.search(r"([\d.]+) ms", executed)
        plans.append(
            {
                "sql": sql,
                "parameters": [_short(a) for a in args],
                "plan": lines,
                "execution_ms": float(found.group(1)) if found else None,
                "has_sort_node": any(re.search(r"\bSort\b", ln) and "Sort Key" not in ln for ln in lines),
                "index_scans": sorted(set(INDEX_SCAN.findall("\n".join(lines)))),
                "shared_buffers_hit_read": _buffers(lines),
            }
        )
    return plans


def _buffers(lines: list[str]) -> str:
    """The top node's buffer counts (hit, read), as PostgreSQL prints them."""
    for line in lines:
        if "Buffers:" in line:
            return line.split("Buffers:", 1)[1].strip()
    return ""


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
