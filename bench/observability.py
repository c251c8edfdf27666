"""Scenario 8: the cost of metrics and tracing, as scenario 2's load on the API with them off, with
metrics only, and with metrics and tracing (each a fresh API process, consumer stopped).

It keys on the service itself: metrics when the settings have a METRICS_ENABLED variable (any prefix),
tracing when the service's code reads the OpenTelemetry SDK's variables (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_SDK_DISABLED). Tracing exports to a stand-in OTLP collector in the bench (bench/otlp_sink.py).
Without either, the results say "not measured: metrics/tracing not implemented yet".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import activity_service
from activity_service.infrastructure.settings import Settings
from bench.checks import check
from bench.context import Context
from bench.drive import load, us_per_event
from bench.otlp_sink import otlp_sink

TITLE = "Observability cost: scenario 2 with metrics/tracing on vs off"
NOT_YET = "not measured: metrics/tracing not implemented yet"
TRACING_OFF = {
    "OTEL_SDK_DISABLED": "true",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
}


def env_names(settings: type[Any] = Settings, prefix: str = "") -> set[str]:
    """Every environment variable the settings read."""
    names: set[str] = set()
    for field_name, info in settings.model_fields.items():
        kind = info.annotation
        config = getattr(kind, "model_config", None)
        if isinstance(kind, type) and isinstance(config, dict) and "env_prefix" in config:
            names |= env_names(kind, str(config.get("env_prefix") or ""))
        else:
            names.add((prefix + (info.alias or field_name)).upper())
    return names


def metrics_toggles(names: set[str] | None = None) -> list[str]:
    names = env_names() if names is None else names
    return sorted(n for n in names if re.fullmatch(r"(\w+_)?METRICS_ENABLED", n))


def has_tracing() -> bool:
    """Whether the service's code configures OpenTelemetry from the SDK's standard variables."""
    package = Path(activity_service.__file__).parent
    return any(
        "OTEL_SDK_DISABLED" in text or "OTEL_EXPORTER_OTLP" in text
        for text in (path.read_text(errors="replace") for path in package.rglob("*.py"))
    )


def variants(metrics: list[str], tracing: bool, sink_url: str) -> dict[str, dict[str, str]]:
    """The environments to compare: everything off first, then each piece added on top."""
    off = dict.fromkeys(metrics, "false") | (TRACING_OFF if tracing else {})
    runs = {"off": off}
    if metrics:
        runs["metrics"] = off | dict.fromkeys(metrics, "true")
    if tracing:
        on = {
            "OTEL_SDK_DISABLED": "false",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
            "OTEL_SERVICE_NAME": "bench",
        }
        runs["metrics + tracing" if metrics else "tracing"] = off | dict.fromkeys(metrics, "true") | on
    return runs


def run(ctx: Context) -> dict[str, Any]:
    metrics, tracing = metrics_toggles(), has_tracing()
    if not metrics and not tracing:
        ctx.say(f"scenario 8: {NOT_YET} (no METRICS_ENABLED setting, no OpenTelemetry configuration)")
        return {"title": TITLE, "status": "not measured", "reason": NOT_YET}
    plan = ctx.plan
    runs: dict[str, Any] = {}
    with otlp_sink() as sink:
        for label, env in variants(metrics, tracing, sink.url).items():
            ctx.say(f"scenario 8: {label}: API with {' '.join(f'{k}={v}' for k, v in env.items())}")
            name = "obs" + re.sub(r"\W+", "", label)
            api = ctx.procs.start_api(f"api-{name}", ctx.env(ctx.names(name), **env))
            exports = sink.exports
            try:
                result, usage = load(ctx, api, "single", plan.single_connections, plan.observability_seconds)
            finally:
                ctx.procs.stop(api)  # a clean stop flushes the spans still buffered
            runs[label] = {
                "wrk": result.as_dict(),
                "usage": usage,
                "env": env,
                "cpu_us_per_request": us_per_event(
                    usage["server"]["cpu_percent"], result.requests_per_second
                ),
                "otlp_exports": sink.exports - exports,
            }
            ctx.say(
                f"scenario 8: {label}: {result.requests_per_second:,.0f} events/s, "
                f"p99 {result.latency_ms['p99']} ms, {runs[label]['otlp_exports']} OTLP exports"
            )
    off = runs["off"]["wrk"]
    figures: dict[str, Any] = {}
    checks = []
    for label, data in runs.items():
        key = re.sub(r"\W+", "_", label)
        figures[f"{key}_events_per_second"] = data["wrk"]["requests_per_second"]
        figures[f"{key}_latency_p99_ms"] = data["wrk"]["latency_ms"]["p99"]
        figures[f"{key}_api_cpu_us_per_request"] = data["cpu_us_per_request"]
        if tracing:
            figures[f"{key}_otlp_exports"] = data["otlp_exports"]
        if label != "off":
            checks.append(
                check(
                    f"single POST, {label} vs all off",
                    data["wrk"]["requests_per_second"],
                    "events/s",
                    ceiling=off["requests_per_second"],
                    ceiling_label="all off",
                )
            )
            checks.append(
                check(
                    f"single POST p99, {label} vs all off",
                    data["wrk"]["latency_ms"]["p99"],
                    "ms",
                    ceiling=off["latency_ms"]["p99"],
                    ceiling_label="all off",
                )
            )
    return {
        "title": TITLE,
        "status": "measured",
        "conditions": "API alone (consumer stopped); wrk closed loop at scenario 2's connections; "
        "tracing exports to a stand-in OTLP/HTTP collector in the bench process",
        "figures": figures,
        "details": runs,
        "checks": checks,
    }
