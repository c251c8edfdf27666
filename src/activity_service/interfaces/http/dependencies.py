"""What routes get from the app: the use cases built by bootstrap at start-up."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from activity_service.bootstrap import ApiServices


def _services(request: Request) -> ApiServices:
    return cast(ApiServices, request.app.state.services)


Services = Annotated[ApiServices, Depends(_services)]


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None
