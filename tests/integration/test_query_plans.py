"""Which plan the database picks for each query shape the API sends, on the engine the tests run on.

- **MongoDB** (under testcontainers, where Docker runs): every filter + sort (+ keyset) must be a scan of
  the index made for it, with no collection scan and no in-memory sort.
- **FerretDB 1.24 on SQLite** (the local stack's default): it pushes none of them down.
- **FerretDB 1.24 on PostgreSQL** (``STACK_FERRETDB_BACKEND=postgresql``): the equalities (tenant, userId,
  action) are evaluated by PostgreSQL, as jsonb containment (``_jsonb -> 'userId' @> '"u1"'``), which none
  of the B-tree expression indexes FerretDB makes for ours can serve: a sequential scan, with the range, the
  sort and the limit left to FerretDB.

On FerretDB the test records exactly that, so an upgrade that starts pushing down shows up here; it proves
nothing about indexes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from activity_service.domain.activity import Activity
from activity_service.domain.query import ActivityQuery, Position
from activity_service.infrastructure.mongo.compat import ServerQuirks
from activity_service.infrastructure.mongo.repository import (
    SORT,
    MongoActivityRepository,
    filter_for,
    keyset_filter,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHAPES = {
    "timestamp_id": ActivityQuery(start=NOW),
    "userId_timestamp_id": ActivityQuery(user_id="u1"),
    "action_timestamp_id": ActivityQuery(actions=("view",)),
}


@pytest.fixture
async def collection(database: Any, quirks: ServerQuirks) -> Any:
    repository = MongoActivityRepository(database["activities"], quirks)
    await repository.ensure_indexes()
    await repository.add_many(
        [Activity.record(id=f"e{i}", user_id=f"u{i % 5}", action="view", received_at=NOW) for i in range(50)]
    )
    return database["activities"]


def stages(plan: Any) -> list[str]:
    """Every ``stage`` named anywhere in an explain document (winning plan and its inputs)."""
    found: list[str] = []
    if isinstance(plan, dict):
        if isinstance(plan.get("stage"), str):
            found.append(plan["stage"])
        for key, value in plan.items():
            if key != "rejectedPlans":
                found += stages(value)
    elif isinstance(plan, list):
        for item in plan:
            found += stages(item)
    return found


@pytest.mark.parametrize("index", sorted(SHAPES))
@pytest.mark.parametrize("keyset", [False, True], ids=["first-page", "cursor-page"])
async def test_each_query_shape_is_planned_as_its_engine_can(
    collection: Any, quirks: ServerQuirks, index: str, keyset: bool
) -> None:
    query = SHAPES[index]
    criteria = keyset_filter(filter_for(query), Position(NOW, "e25") if keyset else None)
    plan = await collection.find(criteria).sort(SORT).limit(11).explain()
    if quirks.server.startswith("FerretDB"):
        # Proves only what FerretDB does: it sorts above its backend, every page a full scan.
        assert plan["sortPushdown"] is False and plan["limitPushdown"] is False, plan
        backend_plan = plan["queryPlanner"]["Plan"]
        if isinstance(backend_plan, dict):  # PostgreSQL's own EXPLAIN: the postgresql backend
            assert plan["filterPushdown"] is True and backend_plan["Node Type"] == "Seq Scan", plan
        else:  # SQLite's EXPLAIN QUERY PLAN lines
            assert plan["filterPushdown"] is False, plan
        return
    # MongoDB: a range of the index made for this shape, read in index order.
    found = stages(plan["queryPlanner"]["winningPlan"])
    assert "IXSCAN" in found and "COLLSCAN" not in found and "SORT" not in found, found
    assert index in json.dumps(plan["queryPlanner"]["winningPlan"], default=str)
