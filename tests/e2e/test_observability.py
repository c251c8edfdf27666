"""Metrics that count exactly, one trace from the request to the stored document, JSON logs."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.processes import API_KEY, Deployment, api, free_port, get, post, total, wait_until


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, keyed by name and sorted labels."""
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_by_exactly_what_happened(deployment: Deployment) -> None:
    metrics_port = free_port()
    deployment.start_consumer(CONSUMER_METRICS_PORT=str(metrics_port))
    _, base_url = deployment.start_api()
    consumer_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    wait_until(lambda: httpx.get(consumer_metrics, timeout=2).status_code == 200, 30, "consumer metrics")
    api_before = scrape(f"{base_url}/metrics")

    with api(base_url) as http:
        singles = [
            http.post("/api/activities", json={"userId": "m", "action": "a", "id": f"m-{i}"})
            for i in range(7)
        ]
        invalid = [http.post("/api/activities", json={"userId": "", "action": "a"}) for _ in range(3)]
        batch = http.post(
            "/api/activities/batch",
            json={
                "activities": [{"userId": "m", "action": "b", "id": f"b-{i}"} for i in range(5)]
                + [{"x": 1}] * 2
            },
        )
        again = [
            http.post("/api/activities", json={"userId": "m", "action": "a", "id": f"m-{i}"})
            for i in range(4)
        ]
    assert {r.status_code for r in singles + again} == {202} and {r.status_code for r in invalid} == {400}
    assert batch.json()["accepted"] == 5
    wait_until(lambda: total(base_url) == 12, 60, "12 events to be stored", logs=deployment.logs)
    wait_until(
        lambda: value(scrape(consumer_metrics), "activity_consumer_events_duplicate_total") == 4,
        30,
        "the 4 resent events to reach the consumer",
        logs=deployment.logs,
    )

    def lags(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> list[float]:
        return [v for (name, _), v in samples.items() if name == "activity_consumer_lag_events"]

    # The duplicates are counted while their batch is written; the lag gauges move after it is
    # committed (progress.py, after_batch), so they may still show the batch before.
    wait_until(
        lambda: (found := lags(scrape(consumer_metrics))) != [] and all(v == 0 for v in found),
        30,
        "the consumer to report no lag after committing the last batch",
        logs=deployment.logs,
    )

    after = scrape(f"{base_url}/metrics")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(api_before, name, **labels)

    assert delta("activity_events_accepted_total") == 7 + 5 + 4
    assert delta("activity_events_rejected_total", reason="invalid") == 3 + 2
    route = {"route": "/api/activities", "method": "POST"}
    assert delta("activity_http_requests_total", **route, status="202") == 11
    assert delta("activity_http_requests_total", **route, status="400") == 3
    assert delta("activity_http_request_duration_seconds_count", **route) == 14
    assert value(after, "activity_events_in_flight") == 0

    consumer = scrape(consumer_metrics)
    assert value(consumer, "activity_consumer_events_persisted_total") == 12
    assert value(consumer, "activity_consumer_events_duplicate_total") == 4
    assert value(consumer, "activity_consumer_batches_total") >= 1
    assert value(consumer, "activity_consumer_batch_size_events_sum") == 16
    ages = [v for (name, _), v in consumer.items() if name == "activity_consumer_watermark_age_seconds"]
    assert lags(consumer) and all(v == 0 for v in lags(consumer))
    assert ages and all(0 <= v < 30 for v in ages)


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP endpoint on loopback that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []  # (service, trace id, span name)
        self.values: list[str] = []
        """Every string attribute value of every span."""
        super().__init__(("127.0.0.1", 0), _CollectorHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _CollectorHandler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.server.spans.append((service, span.trace_id.hex(), span.name))
                    self.server.values += [a.value.string_value for a in span.attributes]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()


def test_one_trace_runs_from_the_request_through_kafka_to_the_stored_document(
    deployment: Deployment, collector: Collector
) -> None:
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    deployment.start_consumer(**tracing)
    _, base_url = deployment.start_api(**tracing)
    event_id = post(base_url, "/api/activities", json={"userId": "t", "action": "traced"}).json()["id"]
    wait_until(
        lambda: get(base_url, f"/api/activities/{event_id}").status_code == 200, 60, "the event stored"
    )
    trace_id = get(base_url, f"/api/activities/{event_id}").json()["traceId"]
    assert trace_id and len(trace_id) == 32

    def services_in_trace() -> set[str]:
        return {service for service, tid, _ in collector.spans if tid == trace_id}

    wait_until(
        lambda: services_in_trace() >= {"activity-service-api", "activity-service-consumer"},
        30,
        "spans of both processes in the request's trace",
        logs=deployment.logs,
    )
    names = {name for _, tid, name in collector.spans if tid == trace_id}
    assert {"activities publish", "activities process"} <= names


def test_a_key_in_the_query_reaches_no_span_and_no_log_line(
    deployment: Deployment, collector: Collector
) -> None:
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    _, base_url = deployment.start_api(**tracing)
    refused = httpx.post(
        f"{base_url}/api/activities?x=1&key={API_KEY}", json={"userId": "t", "action": "a"}, timeout=30
    )
    assert refused.status_code == 400
    wait_until(
        lambda: any("key=[redacted]" in value for value in collector.values),
        30,
        "the request's span, its URL redacted",
        logs=deployment.logs,
    )
    assert not [value for value in collector.values if API_KEY in value]

    def log() -> str:
        return "\n".join(path.read_text(errors="replace") for path in deployment.logs.iterdir())

    # The access line is an INFO line: the API's log flusher writes it within 0.2 s, as late as the
    # span exporter sends the span, so the span may come first.
    wait_until(
        lambda: "key=[redacted]" in log(), 10, "the access log line, its URL redacted", logs=deployment.logs
    )
    assert API_KEY not in log()


def test_logs_are_json_lines_carrying_the_request_id_the_response_echoed(deployment: Deployment) -> None:
    _, base_url = deployment.start_api()
    chosen = post(
        base_url, "/api/activities", json={"userId": "l", "action": "a"}, headers={"X-Request-ID": "req-42"}
    )
    assert chosen.headers["x-request-id"] == "req-42"
    made = get(base_url, "/health")
    assert len(made.headers["x-request-id"]) == 32
    unsafe = get(base_url, "/health", headers={"X-Request-ID": "bad id\\n{}"})
    assert unsafe.headers["x-request-id"] != "bad id\\n{}"

    def every_line() -> list[str]:
        """Whole logs: log_text keeps each one's last 4,000 characters, cutting its first line in two once
        the API logged more (a loaded machine's slow start-up adds readiness probes)."""
        logs = (path.read_text(errors="replace") for path in sorted(deployment.logs.iterdir()))
        return [line for log in logs for line in log.splitlines() if line.strip()]

    def entries() -> list[dict[str, Any]]:
        return [json.loads(line) for line in every_line() if line.startswith("{")]

    wait_until(lambda: any(e.get("request_id") == "req-42" for e in entries()), 10, "the access log line")
    access = next(e for e in entries() if e.get("request_id") == "req-42")
    assert {"time", "level", "logger", "message"} <= set(access)
    assert access["logger"] == "uvicorn.access" and "POST /api/activities" in access["message"]
    not_json = [line for line in every_line() if not line.startswith("{")]
    assert not not_json, not_json[:3]
