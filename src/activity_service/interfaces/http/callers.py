"""Who a request under /api comes from, as the routes need it: whose events it writes and reads, what an
event it sends records of it, and whether it may see personal data."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from activity_service.domain.addresses import kept_address
from activity_service.infrastructure.observability.tracing import current_trace_id
from activity_service.infrastructure.settings import Settings
from activity_service.interfaces.http.dependencies import client_address
from activity_service.interfaces.http.security.auth import client_of
from activity_service.interfaces.http.security.keys import READ_PII


@dataclass(frozen=True, slots=True)
class Sender:
    """What an event records of the request that sent it."""

    tenant: str
    source: str | None
    """The API key's name."""
    ip_address: str | None
    """The client's address, as much of it as IP_ADDRESS_MODE keeps."""
    trace_id: str | None


def sender_of(request: Request) -> Sender:
    client = client_of(request)
    settings: Settings = request.app.state.settings
    address = kept_address(client_address(request), settings.ip_address_mode)
    return Sender(client.tenant, client.source, address, current_trace_id())


def tenant_of(request: Request) -> str:
    """Whose events the request reads: its key's tenant's only."""
    return client_of(request).tenant


def shows_addresses(request: Request) -> bool:
    """Whether reads show ``ipAddress``: always, unless PII_READ_SCOPE_REQUIRED and the key lacks
    activities:read-pii."""
    settings: Settings = request.app.state.settings
    return not settings.pii_read_scope_required or READ_PII in client_of(request).scopes
