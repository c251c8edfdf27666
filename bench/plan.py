"""How much of everything a run does: the full plan (`make bench`, ~10 minutes) and the quick one
(`make bench-quick`, under a minute, only to prove the harness works end to end)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Plan:
    name: str
    warmup_seconds: float
    """Load before each measured wrk run (JIT-free Python still warms caches, pools, Kafka batches)."""
    ceiling_seconds: float
    generator_seconds: float
    single_seconds: float
    single_connections: int
    batch_seconds: float
    batch_connections: int
    batch_size: int
    raw_producer_seconds: float
    memory_seconds: float
    overload_factor: int
    freshness_seconds: float
    freshness_probes_per_second: float
    drain_events: int
    drain_ceiling_events: int
    query_events: int
    query_samples: int
    observability_seconds: float = 10
    profile_seconds: float = 8
    """Length of each extra, unmeasured run during which py-spy samples the API."""
    profile_events: int = 60_000
    """Events pre-filled beyond scenario 4's count, drained while py-spy samples the consumer."""
    wrk_threads: int = 1
    partitions: int = 6
    users: int = 1000
    # PostgreSQL (scenarios 9-11): 1M events, the figure issue #16 asks for.
    pg_drain_events: int = 1_000_000
    pg_ceiling_events: int = 1_000_000
    """Rows inserted by each variant of scenario 9's ceiling (the bare insert on one and on two
    connections, and the service's own statement), interleaved batch by batch."""
    pg_query_events: int = 1_000_000
    pg_query_samples: int = 200
    """Samples of each cheap request kind (first pages, keyset pages, get, stats): enough for a p99."""
    pg_total_samples: int = 20
    """Samples of each request that counts a page mode's `total` (hundreds of ms each on 1M rows)."""
    pg_deep_pages: int = 10_000
    stats_samples: int = 100
    """Samples of each stats request on FerretDB (scenario 11; PostgreSQL's are in scenario 10's rounds)."""
    stats_hours: int = 720
    """The range of the stats request: 30 days by hour."""
    stats_fill_hours: int = 720
    """How many of those hours FerretDB's stats data set fills (an hour document each)."""
    # Live tail (scenario 12).
    tail_streams: int = 200
    tail_seconds: float = 20
    tail_probes_per_second: float = 20
    tail_closed_seconds: float = 10
    # FerretDB on PostgreSQL (scenario 13): the MongoDB path again, on smaller counts than 4 and 6.
    ferretpg_drain_events: int = 100_000
    ferretpg_query_events: int = 30_000

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Budget (quiet machine): ingest ~115 s, observability ~40 s, pipeline ~50 s, drain + its ceiling ~210 s,
# queries ~65 s: about 8 minutes, leaving room for a busy machine within ~10.
# FerretDB is what limits the counts: inserts slow down as the collection grows (the 1M drain and its
# 1M ceiling took 7 minutes together), and every list query scans the whole collection.
FULL = Plan(
    name="full",
    warmup_seconds=2,
    ceiling_seconds=15,
    generator_seconds=5,
    single_seconds=15,
    single_connections=32,
    batch_seconds=15,
    batch_connections=16,
    batch_size=100,
    raw_producer_seconds=10,
    memory_seconds=10,
    overload_factor=3,
    freshness_seconds=20,
    freshness_probes_per_second=40,
    drain_events=500_000,
    drain_ceiling_events=500_000,
    query_events=30_000,
    query_samples=4,
    observability_seconds=8,
    profile_seconds=6,
    profile_events=50_000,
    # The PostgreSQL drain at 200k, not 1M: its ceiling inserts the same rows four times (two statements,
    # one and two connections), so 1M meant 5M rows written, over ten minutes alone. The 1M figure the
    # issue asks for is the query scenario's (10), whose table is filled directly.
    pg_drain_events=200_000,
    pg_ceiling_events=200_000,
)

QUICK = Plan(
    name="quick",
    warmup_seconds=1,
    ceiling_seconds=1,
    generator_seconds=1,
    single_seconds=1,
    single_connections=16,
    batch_seconds=1,
    batch_connections=4,
    batch_size=100,
    raw_producer_seconds=1,
    memory_seconds=1,
    overload_factor=3,
    freshness_seconds=3,
    freshness_probes_per_second=20,
    drain_events=5_000,
    drain_ceiling_events=5_000,
    query_events=1_000,
    query_samples=2,
    observability_seconds=1,
    profile_seconds=1,
    profile_events=2_000,
    users=200,
    pg_drain_events=5_000,
    pg_ceiling_events=5_000,
    pg_query_events=5_000,
    pg_query_samples=5,
    pg_total_samples=2,
    pg_deep_pages=50,
    stats_samples=5,
    stats_fill_hours=24,
    tail_streams=20,
    tail_seconds=3,
    tail_probes_per_second=10,
    tail_closed_seconds=1,
    ferretpg_drain_events=2_000,
    ferretpg_query_events=1_000,
)
