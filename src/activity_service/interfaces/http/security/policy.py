"""The security configuration an app runs with, checked once when the app is created."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection

from activity_service.infrastructure.settings import PLACEHOLDER_MARK, ApiSettings, AuthSettings
from activity_service.interfaces.http.security.keys import ApiKeys
from activity_service.interfaces.http.security.proxies import TrustedProxies

log = logging.getLogger(__name__)


class InsecureConfiguration(SystemExit):
    """The settings would leave the API open by mistake. A SystemExit, so that whatever starts the app
    (``activity-service api``, ``uvicorn --factory``) stops with this message and no traceback."""


@dataclass(frozen=True, slots=True)
class HttpSecurity:
    keys: ApiKeys | None
    """None when AUTH_ENABLED is false."""
    proxies: TrustedProxies
    protect_docs: bool
    protect_metrics: bool

    @classmethod
    def from_settings(
        cls, auth: AuthSettings, api: ApiSettings, *, development: bool = False
    ) -> HttpSecurity:
        """``development``: APP_ENV=development, where the keys shipped in the repository may be used."""
        shipped = [key.name for key in auth.api_keys if key.shipped] if auth.enabled else []
        if shipped and not development:
            raise InsecureConfiguration(
                f"activity-service: refusing to start: AUTH_API_KEYS holds {len(shipped)} key(s) shipped in "
                f"this repository ({', '.join(shipped)}): a {PLACEHOLDER_MARK} placeholder or the committed "
                "laptop key of docker/app.env, which anyone can read. Give your own keys from your secret "
                "store (or set APP_ENV=development on a laptop)."
            )
        if shipped:
            log.warning("APP_ENV=development: the API accepts keys shipped in the repository (%s)", shipped)
        if auth.enabled and not auth.api_keys:
            raise InsecureConfiguration(
                "activity-service: refusing to start: AUTH_ENABLED is true but AUTH_API_KEYS lists no key. "
                'Give AUTH_API_KEYS, a JSON list of {"name", "key" or "sha256", "scopes"}, from your secret '
                "store (make run creates a local one), or set AUTH_ENABLED=false to accept requests "
                "without a key (never in production)."
            )
        if not auth.enabled:
            log.warning("AUTH_ENABLED=false: the API accepts requests without a key")
        return cls(
            keys=ApiKeys(auth.api_keys) if auth.enabled else None,
            proxies=TrustedProxies(api.trusted_proxy_networks),
            protect_docs=auth.enabled and auth.protect_docs,
            protect_metrics=auth.enabled and auth.protect_metrics,
        )

    @property
    def publishable(self) -> bool:
        """Whether some key is a publishable one (for web pages)."""
        return self.keys is not None and bool(self.keys.origins)

    def client_address(self, peer: str | None, headers: Headers) -> str | None:
        """The socket's peer; X-Forwarded-For only when that peer is a trusted proxy."""
        if not self.proxies:
            return peer
        return self.proxies.client_address(peer, headers.getlist("x-forwarded-for"))


def security_of(connection: HTTPConnection) -> HttpSecurity:
    return cast(HttpSecurity, connection.app.state.security)
