"""A key sent in a URL's query (``?key=``) never reaches a log line or a span: uvicorn's access log and
the request span both record the target with its query."""

from __future__ import annotations

import logging
from typing import Any

from activity_service.infrastructure.logging import REDACTED, RedactedTargets, redacted
from activity_service.interfaces.http.observability import _without_keys


def test_the_key_parameter_is_redacted_wherever_it_is_and_however_it_is_spelled() -> None:
    assert redacted("/api/activities/batch?key=pk-123") == f"/api/activities/batch?key={REDACTED}"
    assert redacted("/a?x=1&key=s3cret&y=2") == f"/a?x=1&key={REDACTED}&y=2"
    assert redacted("/a?%6Bey=s3cret") == f"/a?%6Bey={REDACTED}"  # the name as the server decodes it
    assert redacted("/a?key=one&key=two") == f"/a?key={REDACTED}&key={REDACTED}"
    assert redacted("/a?KEY=s3cret&Api_Key=s3cret&token=s3cret") == (
        f"/a?KEY={REDACTED}&Api_Key={REDACTED}&token={REDACTED}"
    ), "nor a key sent under another name, or cased otherwise, by mistake"
    assert redacted("/a?monkey=1&keys=2") == "/a?monkey=1&keys=2"
    assert redacted("/api/activities") == "/api/activities"


def test_the_access_log_line_carries_no_key() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/api/activities?key=sk-secret-0123456789", "1.1", 400),
        None,
    )
    assert RedactedTargets().filter(record)
    assert "sk-secret" not in record.getMessage()
    assert record.getMessage() == f'127.0.0.1:5000 - "POST /api/activities?key={REDACTED} HTTP/1.1" 400'


class RecordingSpan:
    """What a span holds: attributes, set as the instrumentation sets them."""

    def __init__(self, **attributes: Any) -> None:
        self.attributes = dict(attributes)

    def set_attribute(self, name: str, value: Any) -> None:
        self.attributes[name] = value


def test_the_request_span_carries_no_key() -> None:
    span = RecordingSpan(
        **{
            "http.url": "http://api.test/api/activities?key=pk-1&x=2",
            "http.target": "/api/activities?key=pk-1&x=2",
            "url.query": "key=pk-1&x=2",
            "http.method": "POST",
        }
    )
    _without_keys(span, {"type": "http", "query_string": b"key=pk-1&x=2"})
    assert all("pk-1" not in str(value) for value in span.attributes.values()), span.attributes
    assert span.attributes["url.query"] == f"key={REDACTED}&x=2"
