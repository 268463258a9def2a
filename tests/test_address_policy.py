"""The SSRF rules and the tenant allowlist (actors/tools/address_policy.py).

Properties (hypothesis): every IPv6 form that carries a refused IPv4 address
is refused, and carries a public one through where the form routes; the
allowlist lets exactly its destinations through; any entry text parses or
gives an AllowlistError naming it.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.actors.tools.address_policy import (
    AddressPolicy,
    AllowEntry,
    AllowlistError,
    blocked_reason,
    parse_allow_entry,
    parse_allowlist,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

REFUSED_V4_NETWORKS = [
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


@st.composite
def refused_v4(draw: st.DrawFn) -> V4:
    net = draw(st.sampled_from(REFUSED_V4_NETWORKS))
    return net[draw(st.integers(0, net.num_addresses - 1))]


any_v4 = st.integers(0, 2**32 - 1).map(V4)
public_v4 = any_v4.filter(lambda a: blocked_reason(a) is None)


def mapped(a: V4) -> V6:
    return V6(b"\0" * 10 + b"\xff\xff" + a.packed)


def nat64(a: V4) -> V6:
    return V6(bytes.fromhex("0064ff9b") + b"\0" * 8 + a.packed)


def sixtofour(a: V4, suffix: int) -> V6:
    return V6(b"\x20\x02" + a.packed + suffix.to_bytes(10, "big"))


def compatible(a: V4) -> V6:
    return V6(b"\0" * 12 + a.packed)


# -- named examples: the reason a person reads ---------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "169.254.169.254 is link-local (cloud metadata)"),
        ("127.0.0.1", "127.0.0.1 is loopback"),
        ("10.2.3.4", "10.2.3.4 is private (RFC 1918)"),
        ("100.64.0.1", "100.64.0.1 is shared address space (carrier-grade NAT, RFC 6598)"),
        ("255.255.255.255", "255.255.255.255 is broadcast"),
        ("239.1.2.3", "239.1.2.3 is multicast"),
        ("0.0.0.0", "0.0.0.0 is unspecified ('this network', RFC 1122)"),
        ("::1", "::1 is loopback"),
        ("::", ":: is unspecified"),
        ("fd12::1", "fd12::1 is unique local (private, RFC 4193)"),
        ("fd00:ec2::254", "fd00:ec2::254 is unique local (private, RFC 4193) (cloud metadata)"),
        ("fe80::1", "fe80::1 is link-local"),
        ("ff02::1", "ff02::1 is multicast"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1 carries 127.0.0.1 (IPv4-mapped), which is loopback"),
        (
            "::ffff:169.254.169.254",
            "::ffff:169.254.169.254 carries 169.254.169.254 (IPv4-mapped), "
            "which is link-local (cloud metadata)",
        ),
        (
            "64:ff9b::10.0.0.1",
            "64:ff9b::10.0.0.1 carries 10.0.0.1 (NAT64, RFC 6052), which is private (RFC 1918)",
        ),
        ("2002:7f00:1::1", "2002:7f00:1::1 carries 127.0.0.1 (6to4, RFC 3056), which is loopback"),
        (
            "::8.8.8.8",
            "::8.8.8.8 is IPv4-compatible (deprecated, RFC 4291), refused whatever it carries",
        ),
    ],
)
def test_each_refusal_says_why(address: str, reason: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8"],
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


def test_teredo_is_refused_naming_what_it_carries() -> None:
    reason = blocked_reason(V6("2001:0:4136:e378:8000:63bf:3fff:fdd2"))
    assert reason is not None and "Teredo" in reason and "client 192.0.2.45" in reason


def test_a_zone_id_changes_nothing() -> None:
    assert blocked_reason(V6("fe80::1%eth0")) == "fe80::1 is link-local"


# -- properties -----------------------------------------------------------------------------


@given(refused_v4())
def test_every_ipv6_form_of_a_refused_ipv4_address_is_refused(address: V4) -> None:
    assert blocked_reason(address) is not None
    for carrier in (mapped(address), nat64(address), sixtofour(address, 1)):
        reason = blocked_reason(carrier)
        assert reason is not None and f"carries {address} " in reason, carrier
    assert blocked_reason(compatible(address)) is not None  # also :: and ::1


@given(public_v4, st.integers(0, 2**80 - 1))
def test_a_public_ipv4_address_passes_in_the_forms_that_route_to_it(
    address: V4, suffix: int
) -> None:
    assert blocked_reason(mapped(address)) is None
    assert blocked_reason(nat64(address)) is None
    assert blocked_reason(sixtofour(address, suffix)) is None
    assert blocked_reason(compatible(address)) is not None  # deprecated: never


@given(any_v4)
def test_a_mapped_address_is_judged_as_the_ipv4_address_it_reaches(address: V4) -> None:
    policy = AddressPolicy()
    assert (policy.refusal(mapped(address), 443) is None) == (policy.refusal(address, 443) is None)


@given(st.integers(0, 2**128 - 1).map(V6))
def test_teredo_and_unique_local_are_always_refused(address: V6) -> None:
    if address.teredo is not None or address in ipaddress.IPv6Network("fc00::/7"):
        assert blocked_reason(address) is not None


@given(refused_v4(), st.integers(1, 65535), st.integers(1, 65535))
def test_an_allowlisted_address_passes_on_its_port_only(address: V4, port: int, other: int) -> None:
    if address in ipaddress.IPv4Network("169.254.169.254/32"):
        return  # never allowlistable (below)
    policy = AddressPolicy.for_tenant([f"{address}:{port}"])
    assert policy.refusal(address, port) is None
    assert policy.refusal(mapped(address), port) is None  # the same destination
    if other != port:
        refusal = policy.refusal(address, other)
        assert refusal is not None and "allowlist does not name it" in refusal


@given(st.integers(8, 32), any_v4, st.integers(0, 2**32 - 1))
def test_a_network_entry_covers_exactly_its_addresses(prefix: int, base: V4, probe: int) -> None:
    network = ipaddress.IPv4Network(f"{base}/{prefix}", strict=False)
    if ipaddress.IPv4Address("169.254.169.254") in network:
        return
    policy = AddressPolicy((AllowEntry(network),))
    address = V4(probe)
    allowed = policy.refusal(address, 80) is None
    assert allowed == (address in network or blocked_reason(address) is None)


@given(st.text(max_size=40))
def test_any_entry_text_parses_or_says_what_is_wrong(text: str) -> None:
    try:
        entry = parse_allow_entry(text)
    except AllowlistError as exc:
        assert repr(text) in str(exc)
    else:
        assert parse_allow_entry(str(entry)) == entry


@given(st.integers(0, 2**128 - 1).map(V6), st.integers(1, 65535))
def test_ipv6_entries_round_trip_with_brackets(address: V6, port: int) -> None:
    if address in ipaddress.IPv6Network("fd00:ec2::254/128"):
        return
    entry = parse_allow_entry(f"[{address}]:{port}")
    assert entry == AllowEntry(ipaddress.IPv6Network(address), port)
    assert parse_allow_entry(str(entry)) == entry


# -- allowlist entries: what is refused, and how it is said --------------------------------


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("10.1.2.3/16", "10.1.2.3/16 has host bits set; did you mean 10.1.0.0/16?"),
        ("0.0.0.0/0", "0.0.0.0/0 is wider than /8"),
        ("::/0", "::/0 is wider than /16"),
        ("169.254.0.0/16", "covers the cloud metadata address 169.254.169.254"),
        ("fd00:ec2::/32", "covers the cloud metadata address fd00:ec2::254"),
        ("internal.example.com", "is a hostname; an allowlist names addresses"),
        ("10.0.0.1:0", "port '0' is not 1-65535"),
        ("10.0.0.1:http", "port 'http' is not 1-65535"),
        ("[fd00::5", "'[' without a closing ']'"),
        ("[fd00::5]443", "expected ':PORT' after ']'"),
        ("10.0.0.300", "'10.0.0.300' is not an IP address or network"),
    ],
)
def test_a_bad_entry_is_refused_with_what_is_wrong(entry: str, says: str) -> None:
    with pytest.raises(AllowlistError, match="allowlist entry") as err:
        parse_allow_entry(entry)
    assert says in str(err.value)
    assert repr(entry) in str(err.value)


def test_entries_of_every_shape_parse() -> None:
    entries = parse_allowlist(
        ["10.1.0.0/16", "10.1.2.3:8443", "[fd00::5]:443", "fd00:1::/64", "[fd00:2::/64]:8080"]
    )
    assert [str(e) for e in entries] == [
        "10.1.0.0/16",
        "10.1.2.3:8443",
        "[fd00::5]:443",
        "fd00:1::/64",
        "[fd00:2::/64]:8080",
    ]
    assert entries[1] == AllowEntry(ipaddress.IPv4Network("10.1.2.3/32"), 8443)


def test_the_operators_own_destinations_are_unrestricted() -> None:
    assert AddressPolicy.unrestricted().refusal(V4("127.0.0.1"), 54321) is None
    assert AddressPolicy().refusal(V4("127.0.0.1"), 54321) == "127.0.0.1 is loopback"
