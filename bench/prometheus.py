"""Reading a service's own Prometheus metrics (when it exports them): the consumer's batch sizes and
write times say where its time goes, as evidence next to the bench's outside view."""

from __future__ import annotations

import httpx


def scrape(url: str) -> dict[str, float]:
    """Every sample of the exposition at ``url``, summed over label sets; {} when it does not answer."""
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        try:
            samples[name] = samples.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return samples


def consumer_breakdown(samples: dict[str, float], wall_seconds: float) -> dict[str, float | None]:
    """From the consumer's metrics: its average batch, and the share of the wall time spent in writes."""
    batches = samples.get("activity_consumer_batches_total")
    writes = samples.get("activity_consumer_write_duration_seconds_count")
    write_seconds = samples.get("activity_consumer_write_duration_seconds_sum")
    events = samples.get("activity_consumer_batch_size_events_sum")
    if not batches or not writes or write_seconds is None or events is None:
        return {}
    return {
        "consumer_batches": batches,
        "consumer_mean_batch_events": round(events / batches, 1),
        "consumer_mean_write_ms": round(1000 * write_seconds / writes, 2),
        "consumer_mean_batch_wall_ms": round(1000 * wall_seconds / batches, 2),
        "consumer_share_of_time_in_writes": round(write_seconds / wall_seconds, 3) if wall_seconds else None,
    }
