"""The browser SDK at /sdk/activity.js: an ES module that web pages import to track activities with a
publishable key (activity.js says how it queues, batches, retries and beacons).

Open (a page loads it before it holds anything) and public: ``Access-Control-Allow-Origin: *``, which a
module script imported from another origin needs, and no credentials. Cached for a day and revalidated
by its ETag (the digest of the file), so a new release reaches pages within a day.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

PATH = "/sdk/activity.js"
SCRIPT = Path(__file__).with_name("activity.js")
CACHE_SECONDS = 86_400


def install(app: FastAPI) -> None:
    script = SCRIPT.read_bytes()
    etag = f'"{hashlib.sha256(script).hexdigest()[:32]}"'
    headers = {
        "Cache-Control": f"public, max-age={CACHE_SECONDS}",
        "ETag": etag,
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }

    @app.get(
        PATH,
        tags=["sdk"],
        summary="The browser SDK",
        response_class=Response,
        responses={
            200: {
                "description": 'The ES module (`import { init, track } from ".../sdk/activity.js"`), '
                "with `Access-Control-Allow-Origin: *`, cached for a day.",
                "content": {"text/javascript": {"schema": {"type": "string"}}},
            },
            304: {"description": "Not modified: `If-None-Match` named the current ETag."},
        },
    )
    async def activity_js(request: Request) -> Response:
        """Open, no key: pages load it before they hold anything. It tracks with a publishable key."""
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(script, media_type="text/javascript; charset=utf-8", headers=headers)
