"""Where the API's CPU goes per request and per event, by stage, from py-spy's raw stacks (#22.2).

Each sample is given to one stage: the innermost frame, walking outwards, that a rule below names. Frames
of general-purpose modules (asyncio, typing, copy, re, json, email, uuid...) are skipped on that walk, so
``asyncio.wait`` awaited by the publisher is the publisher's, and a regex run by the JSON reader is the
reader's. Samples inside the cyclic garbage collector are the collector's. A sample whose only named
frame is the event loop's runner is time in uvloop's own C code (polling, socket reads and writes): the
"event loop and I/O" stage. Stage shares times the process's measured CPU per request (from the measured
run, not the profiled one) give microseconds.

Usage: ``python -m bench.budget RESULTS_DIR`` prints the budgets of a results directory's profiles.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.profiling import asleep

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]+?)(?::\d+)?\)$")

# (stage, substring of the frame's file, substring of the function or "") in the order they are tried.
RULES: list[tuple[str, str, str]] = [
    ("log", "logging/", ""),
    ("log", "activity_service/infrastructure/logging.py", ""),
    ("log", "opentelemetry/sdk/_logs", ""),
    ("log", "_logs/_internal", ""),
    ("metrics", "prometheus_client/", ""),
    ("metrics", "activity_service/interfaces/http/observability.py", ""),
    ("metrics", "activity_service/infrastructure/observability/", ""),
    ("metrics", "opentelemetry/", ""),
    ("auth", "activity_service/interfaces/http/security/auth.py", ""),
    ("auth", "activity_service/interfaces/http/security/keys.py", ""),
    ("auth", "activity_service/interfaces/http/security/policy.py", ""),
    ("auth", "activity_service/interfaces/http/security/proxies.py", ""),
    ("auth", "activity_service/interfaces/http/callers.py", ""),
    ("rate limit", "activity_service/interfaces/http/security/throttle.py", ""),
    ("rate limit", "activity_service/infrastructure/rate_limit.py", ""),
    ("auth", "activity_service/interfaces/http/security/gate.py", ""),
    ("guard", "activity_service/interfaces/http/guard.py", ""),
    ("respond", "activity_service/interfaces/http/security/headers.py", ""),
    ("respond", "activity_service/interfaces/http/problems.py", ""),
    ("HTTP parse", "activity_service/interfaces/http/connections.py", ""),
    ("encode", "activity_service/infrastructure/kafka/codec.py", ""),
    ("produce", "activity_service/infrastructure/kafka/publisher.py", ""),
    ("produce", "aiokafka/", ""),
    ("body parse/validate", "activity_service/interfaces/http/strict_json.py", ""),
    ("body parse/validate", "activity_service/interfaces/http/schemas/", ""),
    ("body parse/validate", "pydantic", ""),
    ("body parse/validate", "fastapi/dependencies/", ""),
    ("body parse/validate", "starlette/requests.py", ""),
    ("body parse/validate", "starlette/datastructures.py", ""),
    ("domain", "activity_service/domain/", ""),
    ("domain", "activity_service/application/", ""),
    ("domain", "activity_service/infrastructure/system.py", ""),
    ("domain", "uuid_utils", ""),
    ("route", "activity_service/interfaces/http/routes/", ""),
    ("route", "activity_service/interfaces/http/", ""),
    ("respond", "starlette/responses.py", ""),
    ("respond", "fastapi/routing.py", "serialize_response"),
    ("respond", "fastapi/encoders.py", ""),
    ("respond", "uvicorn/protocols/http/", "send"),
    ("HTTP parse", "uvicorn/protocols/http/", "HttpToolsProtocol"),
    ("HTTP parse", "uvicorn/protocols/http/", "on_"),
    ("HTTP parse", "httptools", ""),
    ("framework", "fastapi/", ""),
    ("framework", "starlette/", ""),
    ("framework", "uvicorn/", ""),
    ("framework", "bench/bare_server.py", ""),
]
# The frames every task runs under: a sample that walks out to one of them without meeting a rule was
# spent in the loop itself (uvloop's C code: polling, socket reads and writes, callbacks' scheduling).
LOOP_ROOTS = ("asyncio/runners.py", "asyncio/base_events.py", "uvloop/")
STAGES = [
    "HTTP parse",
    "auth",
    "rate limit",
    "guard",
    "body parse/validate",
    "domain",
    "route",
    "encode",
    "produce",
    "respond",
    "log",
    "metrics",
    "framework",
    "event loop and I/O",
    "garbage collector",
    "other",
]


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for raw in stack.split(";"):
        match = _FRAME.match(raw.strip())
        out.append((match["func"], match["file"]) if match else (raw.strip(), ""))
    return out


def stage_of(frames: list[tuple[str, str]]) -> str:
    if any(func.startswith("gc_collect") for func, _ in frames):
        return "garbage collector"
    for func, file in reversed(frames):
        if any(root in file for root in LOOP_ROOTS):  # reached the loop's own root: none of the above
            return "event loop and I/O"
        for stage, where, name in RULES:
            if where in file and name in func:
                return stage
    return "other"


def stages(raw: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit() and not asleep(stack):
            counts[stage_of(_frames(stack))] += int(count)
    return counts


def budget(raw: Path, us_per_request: float | None, events_per_request: int = 1) -> dict[str, Any] | None:
    """Each stage's share of the samples, and its µs per request and per event."""
    if not raw.exists() or not us_per_request:
        return None
    counts = stages(raw)
    total = sum(counts.values())
    if not total:
        return None
    rows = []
    for stage in STAGES:
        share = counts.get(stage, 0) / total
        rows.append(
            {
                "stage": stage,
                "percent": round(100 * share, 1),
                "us_per_request": round(share * us_per_request, 1),
                "us_per_event": round(share * us_per_request / events_per_request, 2),
            }
        )
    return {
        "samples": total,
        "us_per_request": us_per_request,
        "events_per_request": events_per_request,
        "stages": rows,
    }


# (profile file, scenario, figure with its CPU µs per request, events a request, label)
PROFILED = [
    ("ceiling-validate-single.txt", "1_http_ceiling", "validate_cpu_us_per_request", 1, "(a) validate-only"),
    ("ceiling-single.txt", "1_http_ceiling", "server_cpu_us_per_request", 1, "service without Kafka"),
    ("api-single.txt", "2_single_post", "api_cpu_us_per_event", 1, "service, single POST"),
    ("api-batch.txt", "3_batch_post", "api_cpu_us_per_event", 100, "service, batch of 100"),
]


def budgets(results: dict[str, Any], out: Path) -> list[tuple[str, dict[str, Any]]]:
    found = []
    batch_size = results.get("meta", {}).get("plan", {}).get("batch_size", 100)
    for file, key, figure, per_request, label in PROFILED:
        figures = results.get("scenarios", {}).get(key, {}).get("figures", {})
        us = figures.get(figure)
        if us is not None and per_request > 1:  # the batch figure is per event
            per_request = batch_size
            us = us * batch_size
        made = budget(out / "profiles" / file, us, per_request)
        if made:
            found.append((label, made))
    return found


def markdown(results: dict[str, Any], out: Path) -> list[str]:
    found = budgets(results, out)
    if not found:
        return []
    head = "| stage | " + " | ".join(label for label, _ in found) + " |"
    lines = [
        "API CPU by stage, in µs per request (per event for the batch), from the py-spy profiles "
        "(bench/budget.py says how a sample is given to a stage) times the CPU per request measured in "
        "the scenario's measured run. Shares of a few hundred samples: ±1-2 points.",
        "",
        head,
        "|---|" + "---|" * len(found),
    ]
    for i, stage in enumerate(STAGES):
        cells = []
        for _, made in found:
            row = made["stages"][i]
            value = row["us_per_event"] if made["events_per_request"] > 1 else row["us_per_request"]
            cells.append(f"{value:g} ({row['percent']:g}%)")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    totals = []
    for _, made in found:
        per = made["us_per_request"] / made["events_per_request"]
        totals.append(f"**{per:,.1f}** ({made['samples']} samples)")
    lines.append("| **total** | " + " | ".join(totals) + " |")
    return lines


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(__file__).parent / "results"
    results = json.loads((out / "latest.json").read_text())
    print("\n".join(markdown(results, out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
