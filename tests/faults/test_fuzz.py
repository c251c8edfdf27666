"""Fuzzing: schemathesis generates requests from /openapi.json against a real API process, with a valid
key, with none and with an unknown one. No answer may be a 5xx, and every answer must match what the
document says of it (status, content type, headers, body schema). Then the document itself: it must
describe what the service answers. Last, the requests the fuzzer found answered 500, kept as plain
regression tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.e2e.processes import API_KEY, AUTH_HEADERS, Deployment, forget
from tests.faults.ledger import Report

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
HOOKS = "tests.faults.fuzz_checks"  # defines problem_details and negative_data_rejection_as_sent
ROOT = Path(__file__).resolve().parents[2]
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection_as_sent",  # the built-in one less a false positive (fuzz_checks.py)
    "ignored_auth",
    "unsupported_method",
    "problem_details",
]
# Test cases per operation: with a valid key every operation is reached; without one, every /api
# answer is a 401 before the body is read, so fewer cases say all there is to say.
EXAMPLES = {"valid key": 150, "no key": 30, "unknown key": 30}
# The batch's body documents every item as an ActivityIn, to guide clients, but the endpoint takes any
# items on purpose: each is validated on its own and an invalid one is rejected in `results` of a 202.
# So "a schema-violating request was accepted" is the documented behaviour there, not a failure.
CONFIG = "\n".join(
    [
        "[checks]",
        "enabled = false",
        *(f"{check}.enabled = true" for check in CHECKS),
        "",
        "[[operations]]",
        'include-path = "/api/activities/batch"',
        'include-method = "POST"',
        "checks.negative_data_rejection_as_sent.enabled = false",
        "",
        # Stateful scenarios chain operations; there the per-operation exemption above does not apply.
        "[phases.stateful]",
        "checks.negative_data_rejection_as_sent.enabled = false",
    ]
)
HEADERS = {
    "valid key": [f"Authorization: Bearer {API_KEY}"],
    "no key": [],
    "unknown key": ["X-API-Key: not-a-key-anyone-configured"],
}


@pytest.fixture(scope="module")
def api_url(stack: Stack, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One API (and a consumer, so that reads find stored events) for every test of this module."""
    if not Path(SCHEMATHESIS).exists():
        pytest.fail(
            f"schemathesis is not installed in {Path(sys.executable).parent}: it is a dev dependency "
            "(pyproject.toml [dev]); run `make install`.",
            pytrace=False,
        )
    deployment = Deployment(
        stack=stack,
        name=f"faults_t{run_id}_fuzz",
        logs=tmp_path_factory.mktemp("fuzz-logs"),
        # A stream answers until its client leaves: STREAM_MAX_SECONDS ends each fuzzed one soon.
        extra_env={"CONSUMER_METRICS_PORT": "0", "STREAM_MAX_SECONDS": "1"},
    )
    try:
        deployment.start_consumer()
        _, url = deployment.start_api()
        yield url
    finally:
        deployment.stop_all()
        asyncio.run(forget(stack, deployment.name))


@pytest.mark.scenario("8 fuzz")
@pytest.mark.parametrize("who", list(EXAMPLES))
def test_fuzzed_requests_get_no_5xx_and_answers_match_the_document(
    api_url: str, who: str, seed: int, tmp_path: Path, report: Report
) -> None:
    report.scenario = f"8 fuzz, {who}"
    summary = tmp_path / "report.json"
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        SCHEMATHESIS,
        "--config-file",
        str(config),
        "run",
        f"{api_url}/openapi.json",
        "--max-examples",
        str(EXAMPLES[who]),
        "--seed",
        str(seed),
        # One worker: CPython 3.11's ast.parse, which Hypothesis calls to describe strategies, is not
        # thread-safe (python/cpython#106905: "AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "json",
        "--report-json-path",
        str(summary),
        "--output-truncate",
        "true",
        *[arg for header in HEADERS[who] for arg in ("--header", header)],
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    result: dict[str, Any] = json.loads(summary.read_text()) if summary.exists() else {}
    cases = result.get("test_cases", {})
    failures = result.get("failures", [])
    report.details.append(
        f"{cases.get('generated', '?')} test cases, {cases.get('with_failures', '?')} failing; "
        + (
            ", ".join(
                f"{f['code']} {f['title']} x{f['count']} ({', '.join(f['operations'])})" for f in failures
            )
            or "no failure"
        )
    )
    output = run.stdout
    found = output[output.find("FAILURES") :] if "FAILURES" in output else output[-4000:]
    assert run.returncode == 0, f"schemathesis ({who}) failed:\n{found[:8000]}\n{run.stderr[-2000:]}"
    assert cases.get("generated", 0) >= 10 * EXAMPLES[who] // 3, "fewer test cases than expected ran"


# --- the document -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def document(api_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{api_url}/openapi.json", timeout=10).json())


def api_operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        if path.startswith("/api/"):
            for method, operation in operations.items():
                yield f"{method.upper()} {path}", operation


def test_the_document_lists_no_422_since_invalid_requests_get_400(document: dict[str, Any]) -> None:
    """FastAPI documents a 422 HTTPValidationError on every operation with parameters or a body; this
    service answers 400 problem+json instead (the 400 is documented too), so the 422 is never sent."""
    documented = sorted(label for label, op in api_operations(document) if "422" in op["responses"])
    assert documented == [], f"422 documented but never answered by: {documented}"


def test_error_answers_are_documented_with_the_problem_schema_under_their_media_type(
    document: dict[str, Any],
) -> None:
    """Errors are sent as application/problem+json; the document must give that media type the Problem
    schema (it now puts the schema under application/json, never sent for errors, and leaves
    application/problem+json without one, so no tool can check an error body)."""
    wrong = []
    for label, operation in api_operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            content = response.get("content", {})
            if "schema" not in content.get("application/problem+json", {}) or "application/json" in content:
                wrong.append(f"{label} {status}: {sorted(content)}")
    assert wrong == [], "error answers documented without their problem+json schema:\n" + "\n".join(wrong)


def test_reads_document_the_503_they_answer_when_the_database_is_unavailable(
    document: dict[str, Any],
) -> None:
    """Reads raise StoreUnavailable when the database does not answer, mapped to 503 + Retry-After."""
    missing = sorted(
        label
        for label, op in api_operations(document)
        if label.startswith("GET") and "503" not in op["responses"]
    )
    assert missing == [], f"no 503 documented for: {missing}"


# --- what the fuzzer found answered 500 ---------------------------------------------------------------------

ITEM = {"userId": "fuzz-regression", "action": "probe"}
FOUND = {
    "timestamp whose UTC value is before year 1": (
        "POST",
        "/api/activities",
        None,
        {**ITEM, "timestamp": "0001-01-01T00:00:00+14:00"},
    ),
    "timestamp whose UTC value is after year 9999": (
        "POST",
        "/api/activities",
        None,
        {**ITEM, "timestamp": "9999-12-31T23:59:59-14:00"},
    ),
    "sentAt correction out of range": (
        "POST",
        "/api/activities",
        None,
        {**ITEM, "timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"},
    ),
    "batch item with sentAt correction out of range": (
        "POST",
        "/api/activities/batch",
        None,
        {
            "activities": [
                {**ITEM, "timestamp": "0634-11-14T22:14:24Z", "sentAt": "2967-08-08T17:27:42+05:13"}
            ]
        },
    ),
    "batch item with an integer beyond 64 bits": (
        "POST",
        "/api/activities/batch",
        None,
        {"activities": [{**ITEM, "metadata": {"n": 2**64}}]},
    ),
    "startDate whose UTC value is before year 1": (
        "GET",
        "/api/activities",
        {"startDate": "0001-01-01T00:00:00+14:00"},
        None,
    ),
    "endDate whose UTC value is after year 9999": (
        "GET",
        "/api/activities",
        {"endDate": "9999-12-31T23:59:59-14:00"},
        None,
    ),
    "startDate as the last representable day": ("GET", "/api/activities", {"startDate": "9999-12-31"}, None),
}
# A valid day with nothing in it may as well be an empty page.
EXPECTED = {"startDate as the last representable day": {200, 400}}


@pytest.mark.parametrize("case", list(FOUND))
def test_inputs_out_of_the_representable_range_get_a_400_not_a_500(api_url: str, case: str) -> None:
    method, path, params, body = FOUND[case]
    raw = None if body is None else json.dumps(body)  # 2**64 must reach the server as written
    response = httpx.request(
        method,
        f"{api_url}{path}",
        params=params,
        content=raw,
        headers={**AUTH_HEADERS, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code in EXPECTED.get(case, {400}), (
        f"{case}: {response.status_code} {response.text[:300]}"
    )
    if response.status_code == 400:
        assert response.json().get("errors") or response.json().get("results"), "the 400 names no field"
