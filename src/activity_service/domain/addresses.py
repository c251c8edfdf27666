"""How much of a client's network address an event keeps (IP_ADDRESS_MODE)."""

from __future__ import annotations

import ipaddress
from enum import StrEnum


class AddressMode(StrEnum):
    FULL = "full"
    TRUNCATED = "truncated"
    """The network only: IPv4 /24, IPv6 /48 (the last octet, or the last 80 bits, are zeroed)."""
    NONE = "none"


def kept_address(address: str | None, mode: AddressMode) -> str | None:
    """What of ``address`` is kept under ``mode``. Truncated, an address that is not an IP address (a
    proxy's odd X-Forwarded-For, a unix socket) keeps nothing: it cannot be shortened safely."""
    if address is None or mode is AddressMode.NONE:
        return None
    if mode is AddressMode.FULL:
        return address
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
