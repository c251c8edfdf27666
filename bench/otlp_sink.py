"""A stand-in OTLP/HTTP collector for scenario 8: accepts every export with 200 and counts it, so tracing
runs its whole path (spans, batching, protobuf, HTTP export) without a real collector on the machine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_POST(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        size = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(size)
        with self.server.lock:
            self.server.exports += 1
            self.server.bytes += size
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def otlp_sink() -> Iterator[Any]:
    """The sink's server: ``.url`` to export to, ``.exports`` and ``.bytes`` received so far."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.lock, server.exports, server.bytes = threading.Lock(), 0, 0
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
