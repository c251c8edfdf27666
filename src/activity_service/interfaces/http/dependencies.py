"""What routes get from the app: the use cases built by bootstrap at start-up, and the client's address."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Annotated, cast, get_origin

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

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


def given_once(model: type[BaseModel]) -> Callable[[Request], None]:
    """A dependency that refuses a repeated query parameter the model holds one value of: FastAPI
    keeps one of the values and drops the others unsaid (``userId=a&userId=b`` listed one user's
    events). Parameters the model holds a list of (``action``) may repeat."""
    single = {name for name, field in model.model_fields.items() if get_origin(field.annotation) is not list}

    def check(request: Request) -> None:
        counts = Counter(name for name, _ in request.query_params.multi_items())
        repeated = sorted(name for name, seen in counts.items() if seen > 1 and name in single)
        if repeated:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("query", name),
                        "msg": "given more than once; give it once (only list filters repeat)",
                        "input": request.query_params.getlist(name),
                    }
                    for name in repeated
                ]
            )

    return check
