"""What the consumer reports: metrics always (ConsumerMetrics, BatchTelemetry), spans when tracing is on.

Each event gets a span that is a child of the request that carried it (its ``traceparent`` header),
covering the batch write, so one trace runs from the HTTP request to the stored document; the batch
itself gets one span linked to (at most 128 of) those traces.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from opentelemetry.trace import Span, SpanKind

from activity_service.domain.ports import StoreOutcome
from activity_service.infrastructure.observability import metrics
from activity_service.infrastructure.observability.tracing import (
    context_from_headers,
    links_to,
    tracer,
    tracing_enabled,
)


class BatchTelemetry:
    def __init__(self, records: Sequence[Any]) -> None:
        self._records = records
        self._spans: list[Span] = []
        self._stack = ExitStack()

    def __enter__(self) -> BatchTelemetry:
        metrics.CONSUMER_BATCHES.inc()
        metrics.CONSUMER_BATCH_SIZE.observe(len(self._records))
        if tracing_enabled():
            contexts = [context_from_headers(r.headers) for r in self._records]
            self._stack.enter_context(
                tracer().start_as_current_span(
                    "activities persist batch",
                    kind=SpanKind.CONSUMER,
                    links=links_to(contexts),
                    attributes={"messaging.batch.message_count": len(self._records)},
                )
            )
            for record, context in zip(self._records, contexts, strict=True):
                self._spans.append(
                    tracer().start_span(
                        "activities process",
                        context=context,
                        kind=SpanKind.CONSUMER,
                        attributes={
                            "messaging.destination.name": record.topic,
                            "messaging.kafka.destination.partition": record.partition,
                            "messaging.kafka.message.offset": record.offset,
                        },
                    )
                )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for span in self._spans:
            span.end()
        self._stack.close()


class ConsumerMetrics:
    """PersistObserver: what persisting did, as Prometheus counts."""

    def stored(self, outcome: StoreOutcome, seconds: float) -> None:
        metrics.CONSUMER_WRITE_DURATION.observe(seconds)
        metrics.EVENTS_PERSISTED.inc(outcome.inserted)
        metrics.EVENTS_DUPLICATE.inc(outcome.duplicates)
        metrics.EVENTS_CONFLICTING.inc(len(outcome.conflicts))

    def dead_lettered(self, error_type: str) -> None:
        metrics.EVENTS_DEAD_LETTERED.labels(error_type).inc()

    def retried(self, operation: str) -> None:
        metrics.CONSUMER_RETRIES.labels(operation).inc()

    def suppressed(self, count: int) -> None:
        metrics.EVENTS_SUPPRESSED.inc(count)


def lag(partition: int, records_behind: int) -> None:
    metrics.CONSUMER_LAG.labels(str(partition)).set(records_behind)


_complete_until: dict[int, datetime] = {}


def watermark(partition: int, complete_until: datetime | None) -> None:
    """Remember how far the partition is complete; its age is computed when Prometheus scrapes."""
    if complete_until is None:
        return
    if partition not in _complete_until:
        metrics.WATERMARK_AGE.labels(str(partition)).set_function(
            lambda: (datetime.now(UTC) - _complete_until[partition]).total_seconds()
        )
    _complete_until[partition] = complete_until
