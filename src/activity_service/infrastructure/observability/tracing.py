"""OpenTelemetry tracing: on only when an OTLP endpoint is configured, otherwise nothing is set up and
the instrumented paths skip their tracing work (zero cost).

The W3C trace context travels in Kafka message headers (``traceparent``), injected by the publisher and
extracted per record by the consumer, whose per-event span is a child of the request's trace.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context

_enabled = False


def configure_tracing(default_service_name: str) -> bool:
    """Set up the SDK with an OTLP/HTTP exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set and ``OTEL_SDK_DISABLED`` is not true."""
    global _enabled
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME", default_service_name)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    PymongoInstrumentor().instrument()
    _enabled = True
    return True


def shutdown_tracing() -> None:
    """Flush what is buffered; call on the way out."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if _enabled and shutdown is not None:
        shutdown()


def tracing_enabled() -> bool:
    return _enabled


def tracer() -> trace.Tracer:
    return trace.get_tracer("activity_service")


def current_trace_id() -> str | None:
    """The trace id of the span in progress, as 32 hex digits; None when not tracing."""
    if not _enabled:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def kafka_headers() -> list[tuple[str, bytes]] | None:
    """The current trace context as Kafka headers, or None when not tracing."""
    if not _enabled:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


def context_from_headers(headers: Iterable[tuple[str, bytes]] | None) -> Context:
    carrier = {key: value.decode(errors="replace") for key, value in headers or ()}
    return propagate.extract(carrier)


def links_to(contexts: Sequence[Context], limit: int = 128) -> list[trace.Link]:
    links = []
    for context in contexts[:limit]:
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            links.append(trace.Link(span_context))
    return links


def set_attributes(span: trace.Span, attributes: dict[str, Any]) -> None:
    if span.is_recording():
        span.set_attributes(attributes)
