"""The client address: the socket's peer, or X-Forwarded-For only from a trusted proxy."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from pydantic import ValidationError

from activity_service.infrastructure.settings import ApiSettings
from activity_service.interfaces.http.security.proxies import TrustedProxies

TRUSTED = TrustedProxies([ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"), ip_network("fd00::/8")])


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert TrustedProxies([]).client_address("127.0.0.1", ["203.0.113.9"]) == "127.0.0.1"


def test_an_untrusted_peer_cannot_set_its_address() -> None:
    assert TRUSTED.client_address("198.51.100.20", ["203.0.113.9"]) == "198.51.100.20"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() -> None:
    # The client wrote "1.1.1.1" itself; the proxy appended the address it really saw.
    assert TRUSTED.client_address("127.0.0.1", ["1.1.1.1, 203.0.113.9"]) == "203.0.113.9"


def test_a_chain_of_trusted_proxies_is_skipped() -> None:
    assert TRUSTED.client_address("10.0.0.2", ["203.0.113.9, 10.0.0.7", "10.0.0.1"]) == "203.0.113.9"


def test_when_every_hop_is_trusted_the_first_is_the_client() -> None:
    assert TRUSTED.client_address("10.0.0.2", ["10.0.0.5, 10.0.0.6"]) == "10.0.0.5"


def test_an_unreadable_hop_stops_the_walk_at_the_last_trusted_address() -> None:
    assert TRUSTED.client_address("10.0.0.2", ["203.0.113.9, evil, 10.0.0.6"]) == "10.0.0.6"
    assert TRUSTED.client_address("10.0.0.2", ["not-an-ip"]) == "10.0.0.2"
    assert TRUSTED.client_address("10.0.0.2", []) == "10.0.0.2"


def test_ipv6_and_ipv4_mapped_peers() -> None:
    assert TRUSTED.client_address("fd00::1", ["2001:db8::7"]) == "2001:db8::7"
    assert TRUSTED.client_address("::ffff:127.0.0.1", ["203.0.113.9"]) == "203.0.113.9"


def test_the_setting_takes_ips_and_cidrs_and_refuses_anything_else() -> None:
    settings = ApiSettings.explicit(trusted_proxies=" 10.0.0.0/8, 127.0.0.1 ,fd00::/8")
    assert [str(n) for n in settings.trusted_proxy_networks] == ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]
    assert ApiSettings.explicit().trusted_proxy_networks == ()
    with pytest.raises(ValidationError, match="not an IP address"):
        ApiSettings.explicit(trusted_proxies="10.0.0.0/8, proxy.internal")
