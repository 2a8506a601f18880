"""Where a redirect of ``GET /hit`` may go: address classes, the rule, pinned lookups.

address_class        the kind of an IP address (an IPv4 address embedded in IPv6 counts
                     as that IPv4 address)
allowed              a redirect may reach a public address, or one of a class the
                     configured URL's host itself resolves to
RedirectRules        the rule's inputs (the lookup, a fixed configured class for tests)
PinnedResolver       a redirect hop connects only to the addresses that were checked, so
                     a DNS answer that changes between the check and the connect is
                     never used
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# A name lookup: host and port to the addresses they stand for.
Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]


class AddressClass(enum.Enum):
    """Where an address leads; every class but PUBLIC is reachable only from inside."""

    PUBLIC = "public"
    LOOPBACK = "loopback"
    LINK_LOCAL = "link-local"
    PRIVATE = "private"
    UNSPECIFIED = "unspecified"
    MULTICAST = "multicast"
    RESERVED = "reserved"


def _networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Checked in this order; an address in none of them is PUBLIC if it is globally routable.
_CLASS_NETWORKS: tuple[tuple[AddressClass, tuple[IPNetwork, ...]], ...] = (
    (AddressClass.UNSPECIFIED, _networks("0.0.0.0/8", "::/128")),
    (AddressClass.LOOPBACK, _networks("127.0.0.0/8", "::1/128")),
    (AddressClass.LINK_LOCAL, _networks("169.254.0.0/16", "fe80::/10")),
    # RFC 1918, shared address space (RFC 6598), ULA and the old site-local prefix.
    (
        AddressClass.PRIVATE,
        _networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
        + _networks("fc00::/7", "fec0::/10"),
    ),
    (AddressClass.MULTICAST, _networks("224.0.0.0/4", "ff00::/8")),
    # IPv4-compatible IPv6 and the rest of ::/8, the broadcast address and 240/4.
    (AddressClass.RESERVED, _networks("::/8", "240.0.0.0/4")),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped, NAT64 or 6to4 IPv6 address stands for, else itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour or address


def address_class(address: IPAddress) -> AddressClass:
    """The class of an address; an IPv4 address embedded in IPv6 counts as itself."""
    plain = _embedded_ipv4(address)
    for kind, networks in _CLASS_NETWORKS:
        if any(plain in network for network in networks):
            return kind
    return AddressClass.PUBLIC if plain.is_global else AddressClass.RESERVED


def allowed(address: IPAddress, configured: frozenset[AddressClass]) -> bool:
    """Whether a redirect may lead to ``address`` when the configured URL's host resolves
    to addresses of the classes ``configured``: public addresses always, others only
    within those classes."""
    kind = address_class(address)
    return kind is AddressClass.PUBLIC or kind in configured


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The addresses a host name (or an address literal) stands for, from the system."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


@dataclass(frozen=True, kw_only=True)
class RedirectRules:
    """How redirect targets are checked.

    ``resolve`` is the name lookup. ``configured`` is the set of address classes a redirect
    may enter besides PUBLIC; None means those of the configured URL's host, looked up
    when the first redirect arrives. Tests set either; the worker uses the defaults.
    """

    resolve: Resolve = resolve_host
    configured: frozenset[AddressClass] | None = None


DEFAULT_RULES = RedirectRules()


class PinnedResolver(AbstractResolver):
    """Answers for one host name with addresses already checked, and refuses any other."""

    def __init__(self, host: str, addresses: Sequence[IPAddress]) -> None:
        self._host = host.rstrip(".")
        self._addresses = tuple(addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.rstrip(".") != self._host:
            raise OSError(f"{host} is not the host whose addresses were checked")
        return [_resolved(host, address, port) for address in self._addresses]

    async def close(self) -> None:
        """Nothing to release."""


def _resolved(host: str, address: IPAddress, port: int) -> ResolveResult:
    return ResolveResult(
        hostname=host,
        host=str(address),
        port=port,
        family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
        proto=0,
        flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
    )
