"""The explorer page at /explorer: a small browser UI over the read API (cursor pages, counts over time,
the live tail), served from the package like the Swagger UI, so it works offline.

The page is static: it holds no data and no key. The reader pastes a key, which the page keeps in
sessionStorage and sends in the Authorization header of each /api call, so the page itself is open like
/docs, also with AUTH_PROTECT_DOCS=true: a browser cannot send a bearer key when it navigates to a page,
and everything the page shows comes from /api, which asks for the key.

Its Content-Security-Policy lets the page load its own scripts, styles and API answers and nothing else:
no inline script, style or event handler, no framing, no form submission, and Trusted Types required, so
the scripts cannot turn text into HTML.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

PAGE = "/explorer"
STATIC = "/explorer/static"
_HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'"
)


def install(app: FastAPI) -> None:
    app.mount(STATIC, StaticFiles(directory=_HERE / "static"), name="explorer")
    page = (_HERE / "page.html").read_bytes()
    headers = {"Content-Security-Policy": CSP}

    @app.get(PAGE, include_in_schema=False)
    async def explorer() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)
