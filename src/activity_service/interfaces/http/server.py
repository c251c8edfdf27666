"""How the API process serves an app: uvicorn with the service's settings, on a socket it binds itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from activity_service.infrastructure.settings import Settings
from activity_service.interfaces.collector import tune_gc
from activity_service.interfaces.http.connections import BoundedHttpToolsProtocol

if TYPE_CHECKING:
    import uvicorn


def serve(
    app: FastAPI,
    settings: Settings,
    host: str,
    port: int,
    on_server: Callable[[uvicorn.Server], None] | None = None,
) -> int:
    """Serve ``app`` until SIGTERM or SIGINT; the process's exit status. ``app`` is ``create_app(...)``:
    the service's own, or one built with other services (the bench's ceilings). ``on_server`` is handed
    the server before it runs (until uvicorn takes the signals, the caller's handlers stop it)."""
    import uvicorn

    tune_gc()
    config = uvicorn_config(app, settings, host, port)
    server = uvicorn.Server(config)
    if on_server is not None:
        on_server(server)
    # Bound here rather than by uvicorn so that the ingest guard can watch its accept queue.
    listening = config.bind_socket()
    app.state.accept_queue.watch(listening)
    try:
        server.run(sockets=[listening])
    finally:
        listening.close()
    return 0 if server.started else 3  # uvicorn's own exit code for a failed start-up


def uvicorn_config(app: Callable[..., Any], settings: Settings, host: str, port: int) -> uvicorn.Config:
    """The server's settings for ``app``; the bench's bare ceilings are served with the same ones."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep our handlers
        access_log=False,  # the app writes its own (RequestContext, API_ACCESS_LOG): cheaper, same line
        proxy_headers=False,  # the client address comes from the socket, never from a header
        server_header=False,
        timeout_graceful_shutdown=10,
        # Deadlines for reading each request and a bound on its headers (connections.py).
        http=BoundedHttpToolsProtocol.with_limits(
            head_timeout=settings.api.header_timeout_seconds,
            body_timeout=settings.api.body_timeout_seconds,
            max_head_bytes=settings.api.max_header_bytes,
        ),
        timeout_keep_alive=settings.api.keep_alive_seconds,
    )
