"""Swagger UI served from the installed swagger-ui bundle, not a CDN, so /docs works offline.

The page is rendered once; its Content-Security-Policy allows scripts and styles from this origin and,
by its hash, the one inline script that starts the UI, and nothing from anywhere else. With
AUTH_PROTECT_DOCS=true, /docs and /openapi.json need a valid API key (any scope).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from activity_service.interfaces.http.security.auth import document, key_required

STATIC = "/docs/static"
OPENAPI = "/openapi.json"
# The page names its files and the document relative to its own URL (/docs), so it works when the app is
# served under a path prefix (a proxy's, or mounted in another app) as well as at the root.
_FROM_PAGE = {"static": STATIC.removeprefix("/"), "openapi": OPENAPI.removeprefix("/")}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def install(app: FastAPI, protect: bool = False) -> None:
    """Serves /docs and /openapi.json; create the app with ``openapi_url=None`` so these are the only ones."""
    app.mount(STATIC, StaticFiles(directory=swagger_ui_path), name="swagger-ui")
    page = get_swagger_ui_html(
        openapi_url=_FROM_PAGE["openapi"],
        title=f"{app.title} - API docs",
        swagger_js_url=f"{_FROM_PAGE['static']}/swagger-ui-bundle.js",
        swagger_css_url=f"{_FROM_PAGE['static']}/swagger-ui.css",
        swagger_favicon_url=f"{_FROM_PAGE['static']}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # no call to the public validator
    )
    headers = {"Content-Security-Policy": docs_csp(bytes(page.body).decode())}
    guard = key_required(protect)

    @app.get(OPENAPI, include_in_schema=False, dependencies=guard)
    async def openapi() -> JSONResponse:
        if app.openapi_schema is None:
            schema = app.openapi()  # cached by FastAPI: these edits happen once
            document(schema)
            errors_are_problems(schema)
            # "Try it out" calls the API beside this document (a relative server resolves against the
            # document's URL): without it, Swagger UI calls the origin's root, so under a path prefix
            # the key pasted into the page would go to whatever app answers there
            schema["servers"] = [{"url": "."}]
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page.body, headers=headers)


def docs_csp(html: str) -> str:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def errors_are_problems(schema: dict[str, Any]) -> None:
    """Every error answer is documented as what is sent: ``application/problem+json`` with the Problem
    schema. FastAPI would list its default 422 (this service answers 400) and put the model under
    ``application/json``."""
    problem_schema = {"$ref": "#/components/schemas/Problem"}
    problem: dict[str, Any] = {
        "description": "Invalid input; `errors` names every offending field.",
        "content": {"application/problem+json": {"schema": problem_schema}},
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", problem)
            for status, response in responses.items():
                content = response.get("content", {})
                if status.isdigit() and int(status) >= 400 and "application/problem+json" in content:
                    model = content.pop("application/json", {}).get("schema", problem_schema)
                    content["application/problem+json"] = {"schema": model}
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
