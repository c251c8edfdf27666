"""What routes get from the app: the use cases built by bootstrap at start-up, and the client's address."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from activity_service.bootstrap import ApiServices
from activity_service.interfaces.http.security.policy import security_of


async def _services(request: Request) -> ApiServices:
    return cast(ApiServices, request.app.state.services)


Services = Annotated[ApiServices, Depends(_services)]


def client_address(request: Request) -> str | None:
    """The socket's peer; X-Forwarded-For only when that peer is a trusted proxy (API_TRUSTED_PROXIES)."""
    return security_of(request).client_address(
        request.client.host if request.client else None, request.headers
    )
