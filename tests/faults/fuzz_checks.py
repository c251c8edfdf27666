"""Schemathesis checks beyond the documented schema, loaded by the CLI with SCHEMATHESIS_HOOKS.

The OpenAPI document gives no schema for ``application/problem+json`` (see test_fuzz.py), so schemathesis
alone would accept any error body; ``problem_details`` holds every error answer to RFC 9457 and to the
README: ``type``, ``title``, ``status`` (the HTTP status), ``errors`` as ``[{field, message}]``,
``WWW-Authenticate`` on a 401 or 403, ``Retry-After`` on a 429 or 503.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.specs.openapi.checks import negative_data_rejection

# Query parameters documented as strings: "null", "true" and "false" are valid values of theirs.
STRING_QUERY_PARAMETERS = {"userId", "action"}
JSON_LITERALS = {"null", "true", "false"}


@schemathesis.check
def negative_data_rejection_as_sent(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis's negative_data_rejection, less one false positive it still reports: a "negative"
    null or boolean for a string query parameter goes on the wire as the string "null", "true" or
    "false", a valid value, which the API rightly accepts (schemathesis issues 2900 and 4600; seen
    here as `GET /api/activities?userId=null&action=null` answered 200). Only when every parameter
    sent is such a string is the failure dropped; judged on the URL as sent, not on what was generated."""
    try:
        return negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData:
        sent = parse_qsl(urlsplit(str(response.request.url)).query, keep_blank_values=True)
        if sent and all(name in STRING_QUERY_PARAMETERS and value in JSON_LITERALS for name, value in sent):
            return None
        raise


@schemathesis.check
def problem_details(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 400 or not case.path.startswith("/api"):
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type == "application/problem+json", f"an error answered as {content_type!r}"
    body = response.json()
    assert isinstance(body, dict), "a problem is a JSON object"
    assert isinstance(body.get("type"), str) and isinstance(body.get("title"), str), "no type or title"
    assert body.get("status") == response.status_code, f"status {body.get('status')} in the body"
    assert isinstance(body.get("detail", ""), str), "detail is not a string"
    errors = body.get("errors", [])
    assert isinstance(errors, list), "errors is not a list"
    for error in errors:
        assert isinstance(error, dict) and set(error) == {"field", "message"}, f"errors item {error!r}"
        assert all(isinstance(v, str) for v in error.values()), f"errors item {error!r}"
    if response.status_code in (401, 403):
        assert response.headers.get("www-authenticate"), "no WWW-Authenticate"
    if response.status_code in (429, 503):
        assert response.headers.get("retry-after"), "no Retry-After"
    return True
