"""The API's routes as one table: which template a path belongs to and which methods it allows.

Built from the routes the app declares, not from the framework's router internals (which change from
one FastAPI release to the next: 0.165 wraps included routers in objects that no longer list their
routes), so metrics can label a request refused before routing and a 405 can name every method.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.routing import BaseRoute
from starlette.types import Scope

UNMATCHED = "unmatched"


@dataclass(frozen=True, slots=True)
class _Entry:
    template: str
    regex: re.Pattern[str]
    methods: frozenset[str] | None
    """None: any method (a mounted app)."""


class RouteTable:
    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def load(self, routes: Iterable[BaseRoute]) -> None:
        """Adds every route that has a path (routes without one, such as included routers, are skipped:
        pass the routers' own routes too)."""
        for route in routes:
            template, regex = getattr(route, "path", None), getattr(route, "path_regex", None)
            if isinstance(template, str) and isinstance(regex, re.Pattern):
                methods = getattr(route, "methods", None)
                self._entries.append(_Entry(template, regex, frozenset(methods) if methods else None))

    def template(self, scope: Scope) -> str:
        """The template of the route that serves this request, or ``unmatched`` (one label for every
        path no route knows, so random URLs cannot blow up a metric's cardinality)."""
        path, method = route_path(scope), scope.get("method", "GET")
        for entry in self._entries:
            if entry.regex.match(path) and (entry.methods is None or method in entry.methods):
                return entry.template
        return UNMATCHED

    def methods_for(self, path: str) -> list[str]:
        """Every method some route allows on ``path`` (its routed form), sorted."""
        found: set[str] = set()
        for entry in self._entries:
            if entry.methods and entry.regex.match(path):
                found |= entry.methods
        return sorted(found)


def public_path(scope: Scope, path: str) -> str:
    """``path`` of this app as a client reaches it: under the ``root_path`` the app is served or mounted
    under (for Location headers)."""
    root: str = scope.get("root_path", "")
    return root + path


def route_path(scope: Scope) -> str:
    """The path as the router sees it: without the ``root_path`` the app is mounted or served under
    (the same rule as Starlette's router, so what is checked is what is routed)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path
