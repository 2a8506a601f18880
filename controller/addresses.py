"""Which client a request comes from, as the rate limits count it.

Without trusted proxies (``CONTROLLER_TRUSTED_PROXIES`` unset) the client is the TCP
peer. When the peer is one of the trusted proxies, the client is the right-most address
of ``X-Forwarded-For`` that is not itself a trusted proxy: each proxy appends the
address it was reached from, so everything to the left of the nearest untrusted hop
may have been written by the client and is not believed. A header that cannot be read
as a list of addresses counts as absent: the peer is the client.

IPv6 clients are counted per /64 (one host usually holds a whole /64), so walking a
prefix does not buy fresh buckets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

from aiohttp import hdrs, web

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN_CLIENT: Final = "unknown"
# The IPv6 prefix one client is assumed to hold.
IPV6_CLIENT_PREFIX_BITS: Final = 64


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128); ValueError names a bad one."""
    networks = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP network such as 10.0.0.0/8") from exc
    return tuple(networks)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> Address | None:
    """The client's address: the peer, or, behind trusted proxies, the right-most
    untrusted hop of ``forwarded_for`` (the X-Forwarded-For headers, in order). None
    when the peer is not an IP address (a Unix socket)."""
    peer_address = None if peer is None else _address(peer)
    if peer_address is None or not trusted or not _trusted(peer_address, trusted):
        return peer_address
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    addresses = [_address(hop) for hop in hops]
    if not addresses:
        return peer_address
    chosen: Address | None = None
    for address in reversed(addresses):
        if address is None:
            return peer_address  # malformed: believe none of it
        chosen = address
        if not _trusted(address, trusted):
            break
    # Every hop trusted: the left-most one is the client (an internal caller).
    return chosen


def client_key(address: Address | None) -> str:
    """What the limits count: the address, an IPv6 one's /64."""
    if address is None:
        return UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX_BITS), strict=False)
        return str(network)
    return str(address)


class ClientAddresses:
    """Names the client of a request, for the per-client limits."""

    def __init__(self, trusted_proxies: Sequence[Network] = ()) -> None:
        self._trusted = tuple(trusted_proxies)

    def of(self, request: web.Request) -> str:
        forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, ()) if self._trusted else ()
        return client_key(client_address(request.remote, forwarded, self._trusted))
