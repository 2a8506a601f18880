"""Where a GET /hit redirect may lead: address classes, the rule, and the pinned resolver."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.addresses import AddressClass, IPAddress, PinnedResolver, address_class, allowed

PUBLIC = AddressClass.PUBLIC
LOOPBACK = AddressClass.LOOPBACK
LINK_LOCAL = AddressClass.LINK_LOCAL
PRIVATE = AddressClass.PRIVATE
UNSPECIFIED = AddressClass.UNSPECIFIED
MULTICAST = AddressClass.MULTICAST
RESERVED = AddressClass.RESERVED

ALL_CLASSES = frozenset(AddressClass)

TABLE: list[tuple[str, AddressClass]] = [
    ("127.0.0.1", LOOPBACK),
    ("127.255.255.254", LOOPBACK),
    ("::1", LOOPBACK),
    ("::ffff:127.0.0.1", LOOPBACK),
    ("64:ff9b::7f00:1", LOOPBACK),
    ("2002:7f00:1::1", LOOPBACK),
    ("169.254.169.254", LINK_LOCAL),
    ("::ffff:169.254.169.254", LINK_LOCAL),
    ("fe80::1", LINK_LOCAL),
    ("10.1.2.3", PRIVATE),
    ("172.16.0.1", PRIVATE),
    ("172.31.255.255", PRIVATE),
    ("192.168.1.1", PRIVATE),
    ("100.64.0.1", PRIVATE),
    ("::ffff:10.0.0.1", PRIVATE),
    ("fc00::1", PRIVATE),
    ("fd12:3456::1", PRIVATE),
    ("0.0.0.0", UNSPECIFIED),
    ("0.1.2.3", UNSPECIFIED),
    ("::", UNSPECIFIED),
    ("::ffff:0.0.0.0", UNSPECIFIED),
    ("224.0.0.1", MULTICAST),
    ("239.255.255.250", MULTICAST),
    ("ff02::1", MULTICAST),
    ("240.0.0.1", RESERVED),
    ("255.255.255.255", RESERVED),
    ("192.0.2.1", RESERVED),
    ("198.18.0.1", RESERVED),
    ("2001:db8::1", RESERVED),
    ("::7f00:1", RESERVED),
    ("8.8.8.8", PUBLIC),
    ("1.1.1.1", PUBLIC),
    ("172.32.0.1", PUBLIC),
    ("::ffff:8.8.8.8", PUBLIC),
    ("2606:4700::1111", PUBLIC),
]

# Every address in these networks is of the class beside it.
NETWORKS: list[tuple[str, AddressClass]] = [
    ("127.0.0.0/8", LOOPBACK),
    ("169.254.0.0/16", LINK_LOCAL),
    ("fe80::/10", LINK_LOCAL),
    ("10.0.0.0/8", PRIVATE),
    ("172.16.0.0/12", PRIVATE),
    ("192.168.0.0/16", PRIVATE),
    ("fc00::/7", PRIVATE),
    ("224.0.0.0/4", MULTICAST),
    ("ff00::/8", MULTICAST),
    ("0.0.0.0/8", UNSPECIFIED),
]


def _in_network(
    pair: tuple[str, AddressClass],
) -> st.SearchStrategy[tuple[IPAddress, AddressClass]]:
    cidr, kind = pair
    return st.ip_addresses(network=cidr).map(lambda address: (address, kind))


addresses = st.ip_addresses()
classified = st.sampled_from(NETWORKS).flatmap(_in_network)


@pytest.mark.parametrize(("text", "kind"), TABLE)
def test_address_class_table(text: str, kind: AddressClass) -> None:
    """Each address of the table is of the class beside it."""
    assert address_class(ipaddress.ip_address(text)) is kind


@given(classified)
def test_every_address_of_a_special_network_has_its_class(
    pair: tuple[IPAddress, AddressClass],
) -> None:
    """Any address inside loopback, link-local, private, multicast or 0/8 is classed so."""
    address, kind = pair
    assert address_class(address) is kind


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_ipv6_counts_as_its_ipv4_address(address: ipaddress.IPv4Address) -> None:
    """::ffff:a.b.c.d and 64:ff9b::a.b.c.d are of the class of a.b.c.d."""
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    nat64 = ipaddress.IPv6Address(f"64:ff9b::{address}")
    assert address_class(mapped) is address_class(address)
    assert address_class(nat64) is address_class(address)


@given(addresses)
def test_public_addresses_are_always_allowed(address: IPAddress) -> None:
    """A public address is allowed whatever the configured URL's class; nothing else is
    allowed when the configured URL is public."""
    assert allowed(address, frozenset({PUBLIC})) is (address_class(address) is PUBLIC)


@given(addresses)
def test_the_configured_class_is_allowed(address: IPAddress) -> None:
    """An address of the configured URL's own class is allowed."""
    assert allowed(address, frozenset({address_class(address)}))


@given(addresses)
def test_another_inside_class_is_refused(address: IPAddress) -> None:
    """An address that is not public is refused unless its class is the configured one."""
    kind = address_class(address)
    others = ALL_CLASSES - {kind}
    assert allowed(address, others) is (kind is PUBLIC)


@pytest.mark.parametrize(
    ("text", "configured", "expected"),
    [
        ("127.0.0.1", LOOPBACK, True),
        ("127.0.0.1", PUBLIC, False),
        ("127.0.0.1", PRIVATE, False),
        ("::ffff:127.0.0.1", PUBLIC, False),
        ("169.254.169.254", PUBLIC, False),
        ("169.254.169.254", LOOPBACK, False),
        ("10.0.0.5", PRIVATE, True),
        ("10.0.0.5", LOOPBACK, False),
        ("0.0.0.0", PUBLIC, False),
        ("224.0.0.1", PUBLIC, False),
        ("240.0.0.1", PUBLIC, False),
        ("8.8.8.8", LOOPBACK, True),
        ("8.8.8.8", PUBLIC, True),
    ],
)
def test_allowed_table(text: str, configured: AddressClass, expected: bool) -> None:
    """Redirect targets against the configured URL's class, case by case."""
    assert allowed(ipaddress.ip_address(text), frozenset({configured})) is expected


async def test_pinned_resolver_answers_only_with_the_checked_addresses() -> None:
    """The pinned resolver gives the checked addresses for its host, and nothing for others."""
    checked = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    resolver = PinnedResolver("upstream.test", checked)
    answers = await resolver.resolve("upstream.test", 8080)
    assert [(a["host"], a["port"]) for a in answers] == [("127.0.0.1", 8080), ("::1", 8080)]
    assert [a["host"] for a in await resolver.resolve("upstream.test.", 80)] == ["127.0.0.1", "::1"]
    with pytest.raises(OSError, match="not the host"):
        await resolver.resolve("elsewhere.test", 8080)
