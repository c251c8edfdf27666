"""Prometheus metrics of both processes, in the default registry.

Names follow Prometheus conventions: a unit suffix, ``_total`` on counters. Each process exports only
what it moves (the API's ``/metrics``; the consumer's own port).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)

# --- API -------------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "activity_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "activity_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_ACCEPTED = Counter("activity_events_accepted_total", "Events acknowledged by Kafka and answered 202.")
EVENTS_REJECTED = Counter(
    "activity_events_rejected_total",
    "Events refused as invalid (400, or rejected items of a batch), by reason.",
    ["reason"],
)
EVENTS_UNAVAILABLE = Counter(
    "activity_events_unavailable_total",
    "Events answered 503: not acknowledged in time, or too many in flight.",
    ["reason"],
)
PUBLISH_DURATION = Histogram(
    "activity_publish_duration_seconds",
    "Time from handing events to the producer to Kafka's acknowledgment.",
    buckets=LATENCY_BUCKETS,
)
EVENTS_IN_FLIGHT = Gauge(
    "activity_events_in_flight", "Events waiting for Kafka's acknowledgment in this process."
)

# --- Consumer --------------------------------------------------------------------------------------
CONSUMER_BATCHES = Counter("activity_consumer_batches_total", "Batches read from Kafka and settled.")
CONSUMER_BATCH_SIZE = Histogram(
    "activity_consumer_batch_size_events", "Records per batch.", buckets=BATCH_BUCKETS
)
CONSUMER_WRITE_DURATION = Histogram(
    "activity_consumer_write_duration_seconds",
    "Time of one successful batch write to the database.",
    buckets=LATENCY_BUCKETS,
)
EVENTS_PERSISTED = Counter("activity_consumer_events_persisted_total", "Events newly stored.")
EVENTS_DUPLICATE = Counter(
    "activity_consumer_events_duplicate_total",
    "Events found already stored (redeliveries, retries, replays).",
)
EVENTS_CONFLICTING = Counter(
    "activity_consumer_events_conflicting_total",
    "Resends of a tenant's event id with other content than the stored event's (dead-lettered, reason "
    "Conflict; the API refuses with 409 those it can tell itself).",
)
EVENTS_SUPPRESSED = Counter(
    "activity_consumer_events_suppressed_total",
    "Events not stored because an erasure of their user covers them.",
)
EVENTS_DEAD_LETTERED = Counter(
    "activity_consumer_events_dead_lettered_total",
    "Messages sent to the dead-letter topic, by reason.",
    ["reason"],
)
CONSUMER_RETRIES = Counter(
    "activity_consumer_retries_total", "Failed attempts that were retried, by operation.", ["operation"]
)
CONSUMER_LAG = Gauge(
    "activity_consumer_lag_events", "Records in the partition not yet read by this consumer.", ["partition"]
)
WATERMARK_AGE = Gauge(
    "activity_consumer_watermark_age_seconds",
    "Age of the persist watermark: how long ago the partition was last known complete.",
    ["partition"],
)
