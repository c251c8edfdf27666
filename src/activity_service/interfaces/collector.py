"""The cyclic garbage collector, tuned for a long-running process of the service (API or consumer)."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Call once start-up is done. Objects that wait on a broker or a database (an API request until
    Kafka acknowledges it, a consumer batch until it is stored) live long enough to reach the older
    generations, and collecting those walked every long-lived object. Freezing what start-up allocated
    and collecting less often measured (make bench):
    - API: the collector was ~20% of its CPU under ingest load; +21-24% single-POST throughput and +22%
      batch throughput at unchanged peak RSS (2026-11-26);
    - consumer: the collector was 10.7% of its CPU draining into PostgreSQL, 0% after; 36.6 -> 33 µs of
      CPU an event (2026-12-02)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
