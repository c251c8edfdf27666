"""The client's address: the socket's peer, unless that peer is a trusted reverse proxy.

Only then is X-Forwarded-For read, from the right: each proxy appends the address it received the request
from, so the first address that is not itself a trusted proxy is the client. Anything left of it was
written by the client and could be forged.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address


class TrustedProxies:
    def __init__(self, networks: Sequence[IPv4Network | IPv6Network]) -> None:
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def client_address(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """``forwarded_for``: every X-Forwarded-For header of the request, in order."""
        if not self._networks or peer is None or not self._trusts(_parse(peer)):
            return peer
        client = peer
        hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops):
            address = _parse(hop)
            if address is None:
                break  # unreadable: keep the last address a trusted proxy vouched for
            client = str(address)
            if not self._trusts(address):
                break
        return client

    def _trusts(self, address: IPv4Address | IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self._networks)


def _parse(value: str) -> IPv4Address | IPv6Address | None:
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
