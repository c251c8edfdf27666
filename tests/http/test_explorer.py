"""The explorer page and its files, in-process: served without a key, each with a strict
Content-Security-Policy, and nothing in them that such a policy would have to allow (inline scripts,
inline event handlers, inline styles, HTML sinks), nor anywhere a key could be kept but sessionStorage."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx

from activity_service.interfaces.http import explorer
from tests.http.conftest import Fakes, serve, settings

STATIC = Path(explorer.__file__).parent / "static"
EXPECTED_CSP = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "base-uri": "'none'",
    "form-action": "'none'",
    "frame-ancestors": "'none'",
    "require-trusted-types-for": "'script'",
    "trusted-types": "'none'",
}


class Page(HTMLParser):
    """What the policy cares about in the page: scripts, handlers, styles, the files it loads, labels."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_scripts: list[str] = []
        self.handlers: list[str] = []
        self.inline_styles: list[str] = []
        self.assets: list[str] = []
        self.controls: list[str] = []
        self.labels: set[str] = set()
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.handlers += [f"<{tag} {name}>" for name, _ in attrs if name.startswith("on")]
        if "style" in attributes or tag == "style":
            self.inline_styles.append(tag)
        for name in ("src", "href"):
            value = attributes.get(name)
            if value and not value.startswith("#"):
                self.assets.append(value)
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag in ("input", "select", "textarea"):
            self.controls.append(attributes.get("id") or f"<{tag} without an id>")
        if tag == "label" and attributes.get("for"):
            self.labels.add(str(attributes["for"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def csp(header: str) -> dict[str, str]:
    directives = (d.strip().split(None, 1) for d in header.split(";") if d.strip())
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


async def test_the_page_is_open_and_served_with_a_strict_csp(fakes: Fakes) -> None:
    async with serve(fakes, key=None) as anonymous:
        page = await anonymous.get("/explorer")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert csp(page.headers["content-security-policy"]) == EXPECTED_CSP
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"


async def test_the_page_needs_no_inline_script_handler_or_style(http: httpx.AsyncClient) -> None:
    parsed = Page()
    parsed.feed((await http.get("/explorer")).text)
    assert parsed.scripts and all(s.get("src") for s in parsed.scripts), parsed.scripts
    assert parsed.inline_scripts == [], "an inline script would need its hash in the CSP"
    assert parsed.handlers == [], f"inline event handlers are refused by the CSP: {parsed.handlers}"
    assert parsed.inline_styles == [], "inline styles are refused by the CSP (style-src 'self')"
    assert not [a for a in parsed.assets if a.lower().startswith("javascript:")]


async def test_every_file_the_page_loads_is_served_from_the_package_without_a_key(fakes: Fakes) -> None:
    parsed = Page()
    async with serve(fakes, key=None) as anonymous:
        parsed.feed((await anonymous.get("/explorer")).text)
        files = [urljoin("/explorer", a) for a in parsed.assets if not a.startswith("data:")]
        modules = [f"/explorer/static/{m}" for m in _imported_modules()]
        assert files and set(modules) - set(files), "the page loads its script, which imports the others"
        for path in [*files, *modules]:
            assert path.startswith("/explorer/static/"), f"{path} would come from elsewhere"
            answer = await anonymous.get(path)
            assert answer.status_code == 200, path
            kind = answer.headers["content-type"]
            assert kind.startswith("text/javascript" if path.endswith(".js") else "text/css"), (path, kind)
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert csp(answer.headers["content-security-policy"])["default-src"] == "'none'", path
        assert (await anonymous.get("/explorer/static/page.html")).status_code == 404


def _imported_modules() -> set[str]:
    imports = set()
    for script in STATIC.glob("*.js"):
        imports |= set(re.findall(r'^import .* from "\./([\w.-]+\.js)";$', script.read_text(), re.MULTILINE))
    assert imports, "the entry module imports the others"
    return imports


def test_the_scripts_use_no_html_sink_eval_or_persistent_storage() -> None:
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
        r"localStorage|document\.cookie|indexedDB|new EventSource"
    )
    for script in STATIC.glob("*.js"):
        found = forbidden.findall(script.read_text())
        assert not found, f"{script.name}: {found}"
    entry = (STATIC / "explorer.js").read_text()
    assert "sessionStorage.setItem" in entry, "the key is kept for the tab only"


async def test_every_control_has_a_label(http: httpx.AsyncClient) -> None:
    parsed = Page()
    parsed.feed((await http.get("/explorer")).text)
    assert parsed.controls and set(parsed.controls) <= parsed.labels, set(parsed.controls) - parsed.labels


async def test_the_page_stays_open_when_docs_need_a_key(fakes: Fakes) -> None:
    """A browser sends no bearer key when it navigates, and the page holds no data: only its /api calls
    need the key, whatever AUTH_PROTECT_DOCS says."""
    async with serve(fakes, settings(auth={"protect_docs": True}), key=None) as anonymous:
        assert (await anonymous.get("/docs")).status_code == 401
        assert (await anonymous.get("/explorer")).status_code == 200
        assert (await anonymous.get("/explorer/static/explorer.js")).status_code == 200
        assert (await anonymous.get("/api/activities")).status_code == 401
