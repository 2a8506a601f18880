"""Which client address the per-client limits count, with and without trusted proxies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller.addresses import Network, client_address, client_key, parse_networks
from tests.controller.conftest import REGISTRATION, ClientFactory, controller_settings

PROXIES = parse_networks("10.0.0.0/8, 192.0.2.1")

# peer, X-Forwarded-For headers, trusted proxies -> the address counted
CASES = [
    ("198.51.100.7", [], PROXIES, "198.51.100.7"),
    ("198.51.100.7", ["203.0.113.5"], (), "198.51.100.7"),
    ("198.51.100.7", ["203.0.113.5"], PROXIES, "198.51.100.7"),
    ("10.1.2.3", [], PROXIES, "10.1.2.3"),
    ("10.1.2.3", ["203.0.113.5"], PROXIES, "203.0.113.5"),
    ("10.1.2.3", ["1.1.1.1, 203.0.113.5"], PROXIES, "203.0.113.5"),
    ("10.1.2.3", ["203.0.113.5, 10.9.9.9"], PROXIES, "203.0.113.5"),
    ("10.1.2.3", ["203.0.113.5, 192.0.2.1, 10.9.9.9"], PROXIES, "203.0.113.5"),
    ("10.1.2.3", ["1.1.1.1", "203.0.113.5"], PROXIES, "203.0.113.5"),
    ("10.1.2.3", ["10.7.7.7, 10.9.9.9"], PROXIES, "10.7.7.7"),
    ("10.1.2.3", ["not-an-address"], PROXIES, "10.1.2.3"),
    ("10.1.2.3", ["203.0.113.5:4711"], PROXIES, "10.1.2.3"),
    ("10.1.2.3", ["203.0.113.5,"], PROXIES, "10.1.2.3"),
    ("10.1.2.3", [""], PROXIES, "10.1.2.3"),
    ("10.1.2.3", ["garbage, 203.0.113.5"], PROXIES, "203.0.113.5"),
    ("::ffff:10.1.2.3", ["203.0.113.5"], PROXIES, "203.0.113.5"),
    ("10.1.2.3", ["2001:db8::1"], PROXIES, "2001:db8::1"),
    (None, ["203.0.113.5"], PROXIES, None),
    ("not-ip", ["203.0.113.5"], PROXIES, None),
]


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), CASES)
def test_client_address(
    peer: str | None, forwarded: list[str], trusted: tuple[Network, ...], expected: str | None
) -> None:
    """The peer, or behind a trusted proxy the right-most untrusted X-Forwarded-For hop;
    anything malformed on the way counts as no header."""
    chosen = client_address(peer, forwarded, trusted)
    assert (None if chosen is None else str(chosen)) == expected


def test_client_key_groups_ipv6_by_64() -> None:
    """IPv4 addresses count alone, IPv6 ones by their /64, no address as 'unknown'."""
    assert client_key(client_address("198.51.100.7", [], ())) == "198.51.100.7"
    assert client_key(client_address("2001:db8:1:2:aa::1", [], ())) == "2001:db8:1:2::/64"
    assert client_key(None) == "unknown"


def test_trusted_proxies_setting(database_url: str) -> None:
    """CONTROLLER_TRUSTED_PROXIES takes comma-separated CIDRs; empty is none; junk is refused."""
    settings = controller_settings(database_url, trusted_proxies="10.0.0.0/8, ::1")
    assert [str(n) for n in settings.trusted_proxy_networks] == ["10.0.0.0/8", "::1/128"]
    assert controller_settings(database_url, trusted_proxies="").trusted_proxy_networks == ()
    assert controller_settings(database_url).trusted_proxy_networks == ()
    with pytest.raises(ValidationError, match=r"10\.0\.0\.0/33"):
        controller_settings(database_url, trusted_proxies="10.0.0.0/33")


async def test_registration_limit_keys_on_the_forwarded_address(
    make_client: ClientFactory,
) -> None:
    """Behind a trusted proxy each forwarded client has its own registration bucket;
    without one, X-Forwarded-For is ignored and all share the peer's."""
    # A bucket that does not refill within the test, however slow the machine.
    trusting = await make_client(
        registration_burst=1, registration_rate_per_second=0.001, trusted_proxies="127.0.0.0/8"
    )
    for client_ip in ("203.0.113.1", "203.0.113.2"):
        headers = {**REGISTRATION, "X-Forwarded-For": client_ip}
        resp = await trusting.post("/register", json={"hostname": "h"}, headers=headers)
        assert resp.status == 201
    headers = {**REGISTRATION, "X-Forwarded-For": "203.0.113.1"}
    again = await trusting.post("/register", json={"hostname": "h"}, headers=headers)
    assert again.status == 429
    assert "203.0.113.1" in (await again.json())["detail"]
    plain = await make_client(registration_burst=1, registration_rate_per_second=0.001)
    statuses = []
    for client_ip in ("203.0.113.1", "203.0.113.2"):
        headers = {**REGISTRATION, "X-Forwarded-For": client_ip}
        statuses.append(
            (await plain.post("/register", json={"hostname": "h"}, headers=headers)).status
        )
    assert statuses == [201, 429]
