"""Slow and oversized clients against the real `activity-service api`, over real sockets: a client that
never finishes its headers, or its body, is answered 408 and closed within the deadline; headers over
the limit are a 431; and hundreds of slow bodies cost sockets, not the slots other clients' POSTs need."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import httpx

from tests.e2e.processes import API_KEY, AUTH_HEADERS, Deployment

DEADLINE = 1.0
SLOW_START = b'{"userId": "slow", '
SLACK = 1.5  # the deadline fires on the event loop: allow for a loaded machine


@contextmanager
def connection(base_url: str) -> Iterator[socket.socket]:
    address = urlsplit(base_url)
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    try:
        yield sock
    finally:
        sock.close()


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    sock.settimeout(timeout)
    received = b""
    with suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def head(path: str, length: int | None = None, extra: str = "") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Authorization: Bearer {API_KEY}"]
    lines.append("Content-Type: application/json")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def test_headers_that_never_end_are_answered_408_and_closed_within_the_deadline(
    deployment: Deployment,
) -> None:
    _, base_url = deployment.start_api(
        API_HEADER_TIMEOUT_SECONDS=str(DEADLINE), API_BODY_TIMEOUT_SECONDS=str(DEADLINE)
    )
    with connection(base_url) as silent, connection(base_url) as partial:
        partial.sendall(b"POST /api/activities HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        answered, took = read_until_closed(partial, DEADLINE + 10)
        assert answered.startswith(b"HTTP/1.1 408 "), answered[:80]
        assert took <= DEADLINE + SLACK, took
        nothing, took = read_until_closed(silent, DEADLINE + 10)  # connected, and never said a word
        assert took <= DEADLINE + SLACK, took
        assert nothing.startswith(b"HTTP/1.1 408 ")
    with connection(base_url) as slow_body:
        slow_body.sendall(head("/api/activities", 100) + b'{"userId": ')
        answered, took = read_until_closed(slow_body, DEADLINE + 10)
        assert answered.startswith(b"HTTP/1.1 408 "), answered[:80]
        assert took <= DEADLINE + SLACK, took
    with httpx.Client(base_url=base_url, headers=AUTH_HEADERS, timeout=30) as client:
        accepted = client.post("/api/activities", json={"userId": "u", "action": "after_slow_clients"})
        assert accepted.status_code == 202


def test_a_body_deadline_shorter_than_the_head_s_still_cuts_a_slow_body_in_time(
    deployment: Deployment,
) -> None:
    """A connection has one timer, set for the head's deadline when a request begins; a body deadline
    that ends sooner must move it, not wait for the head's."""
    head_deadline = 8.0
    _, base_url = deployment.start_api(
        API_HEADER_TIMEOUT_SECONDS=str(head_deadline), API_BODY_TIMEOUT_SECONDS=str(DEADLINE)
    )
    with connection(base_url) as slow_body:
        slow_body.sendall(head("/api/activities", 100) + b'{"userId": ')
        answered, took = read_until_closed(slow_body, head_deadline + 10)
        assert answered.startswith(b"HTTP/1.1 408 "), answered[:80]
        assert took <= DEADLINE + SLACK, f"cut after {took:.1f}s: at the head's deadline, not the body's"


def test_a_large_body_arriving_after_its_head_is_not_counted_as_headers(deployment: Deployment) -> None:
    """The read that completes a request's body is body, not the next request's head: a batch of ~110 KB
    whose tail arrives in a later read than its head was answered 431 (head bytes over 64 KiB)."""
    _, base_url = deployment.start_api()
    items = [{"userId": f"u{i}", "action": "page_view", "metadata": {"pad": "x" * 150}} for i in range(500)]
    body = json.dumps({"activities": items}).encode()
    assert len(body) > 65_536  # the head limit (API_MAX_HEADER_BYTES)
    with connection(base_url) as sock:
        sock.sendall(head("/api/activities/batch", len(body)) + body[:1000])
        time.sleep(0.3)  # the head and the start of the body are read first, on their own
        sock.sendall(body[1000:])
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 202 "), answer[:80]


def test_a_header_over_the_limit_is_a_431(deployment: Deployment) -> None:
    _, base_url = deployment.start_api()
    with connection(base_url) as sock:
        sock.sendall(head("/api/activities", 2, extra="X-Big: " + "a" * (1024 * 1024) + "\r\n"))
        answered, _ = read_until_closed(sock, 30)
    assert answered.startswith(b"HTTP/1.1 431 "), answered[:80]
    with httpx.Client(base_url=base_url, headers=AUTH_HEADERS, timeout=30) as client:
        big = client.get("/health", headers={"X-Big": "b" * 70_000})
        assert big.status_code == 431
        assert big.headers["content-type"] == "application/problem+json"
        assert big.json()["status"] == 431 and big.headers["x-content-type-options"] == "nosniff"
        fits = client.get("/health", headers={"X-Fits": "c" * 8_000})
        assert fits.status_code == 200
        # The longest query a read accepts: 20 actions of 128 four-byte characters, percent-encoded.
        longest = client.get(
            "/api/activities", params={"action": ["\U0001f600" * 128] * 20, "userId": "u" * 256}
        )
        assert longest.status_code == 200, longest.text[:200]


def test_three_hundred_slow_bodies_do_not_block_another_client_s_post(deployment: Deployment) -> None:
    _, base_url = deployment.start_api()  # default deadlines: the slow bodies stay alive throughout
    address = urlsplit(base_url)
    slow = []
    try:
        for _ in range(300):
            sock = socket.create_connection((address.hostname, address.port), timeout=30)
            sock.sendall(head("/api/activities", 200) + SLOW_START)
            slow.append(sock)
            time.sleep(0.005)  # paced, so that the accept-queue shedding (INGEST_MAX_ACCEPT_QUEUE) stays out
        time.sleep(1.0)  # every slow request has reached the API and waits for the rest of its body
        with httpx.Client(base_url=base_url, headers=AUTH_HEADERS, timeout=30) as client:
            started = time.monotonic()
            answers = [
                client.post("/api/activities", json={"userId": "u", "action": f"fast_{n}"}).status_code
                for n in range(5)
            ]
            took = time.monotonic() - started
        assert answers == [202] * 5
        assert took < 5, took
        rest = b'"action": "slow_body"}'.ljust(200 - len(SLOW_START))  # JSON allows trailing spaces
        statuses = []
        for sock in slow:  # each slow request was alive in the API all along, and now completes
            sock.sendall(rest)
            statuses.append(sock.recv(64).split(b" ", 2)[1])
        assert set(statuses) == {b"202"}, {code: statuses.count(code) for code in set(statuses)}
    finally:
        for sock in slow:
            sock.close()
