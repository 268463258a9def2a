"""Which resolved addresses a tenant's webhook may reach (SSRF rules).

The rules follow OWASP's *Server-Side Request Forgery Prevention Cheat Sheet*
("Application layer: validate the resolved IP address against non-routable
ranges"), with the ranges named by the IANA special-purpose registries
(RFC 6890) and :mod:`ipaddress`. A destination is refused when it is:

- IPv4: "this network" ``0.0.0.0/8``, loopback ``127.0.0.0/8``, private
  (RFC 1918 ``10/8``, ``172.16/12``, ``192.168/16``), shared address space
  ``100.64.0.0/10`` (RFC 6598), link-local ``169.254.0.0/16`` (cloud metadata
  at ``169.254.169.254``), multicast ``224/4``, reserved ``240/4``, broadcast
  ``255.255.255.255``, documentation (RFC 5737), benchmarking ``198.18/15``,
  or anything else :attr:`ipaddress.IPv4Address.is_global` says is not global;
- IPv6: unspecified ``::``, loopback ``::1``, unique local ``fc00::/7``
  (RFC 4193; AWS metadata at ``fd00:ec2::254``), link-local ``fe80::/10``,
  site-local ``fec0::/10``, multicast ``ff00::/8``, documentation
  ``2001:db8::/32``, discard ``100::/64``, local-use NAT64 ``64:ff9b:1::/48``,
  or not global;
- an IPv6 address that carries an IPv4 address the rules refuse: IPv4-mapped
  ``::ffff:a.b.c.d`` (judged as the IPv4 address it is), NAT64
  ``64:ff9b::/96`` (RFC 6052) and 6to4 ``2002::/16`` (RFC 3056). The
  deprecated IPv4-compatible ``::a.b.c.d`` (RFC 4291) and Teredo
  ``2001::/32`` (RFC 4380) tunnels are refused whatever they carry.

A tenant's allowlist (:attr:`TenantToolSettings.allowlist`) names internal
destinations that pass anyway: a network or an address, optionally with a
port: ``10.1.0.0/16``, ``10.1.2.3:8443``, ``[fd00::5]:443``, ``fd00::/64``.
:func:`parse_allowlist` checks the entries and raises :class:`AllowlistError`
with what is wrong. No entry may cover the cloud metadata addresses, and none
may be wider than a ``/8`` (IPv4) or ``/16`` (IPv6): an allowlist names
destinations, it does not turn the rules off.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, final

from switchboard.orchestrator.errors import ConfigError

__all__ = [
    "AddressPolicy",
    "AllowEntry",
    "AllowlistError",
    "IPAddress",
    "blocked_reason",
    "parse_allow_entry",
    "parse_allowlist",
    "show_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: Final = (
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack...
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
)

_V4_RANGES: Final = tuple(
    (ipaddress.IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified ('this network', RFC 1122)"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared address space (carrier-grade NAT, RFC 6598)"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved (RFC 1112)"),
        ("192.0.2.0/24", "documentation (RFC 5737)"),
        ("198.51.100.0/24", "documentation (RFC 5737)"),
        ("203.0.113.0/24", "documentation (RFC 5737)"),
        ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    )
)

_V6_RANGES: Final = tuple(
    (ipaddress.IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "unique local (private, RFC 4193)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated, RFC 3879)"),
        ("ff00::/8", "multicast"),
        ("2001:db8::/32", "documentation (RFC 3849)"),
        ("100::/64", "discard-only (RFC 6666)"),
        ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
    )
)

_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")

MIN_PREFIX: Final = {4: 8, 6: 16}
"""The widest allowlist network accepted, by IP version."""


def blocked_reason(address: IPAddress) -> str | None:
    """Why the SSRF rules refuse ``address``, or None when it is globally routable.

    The reason is a sentence for a person: ``"169.254.169.254 is link-local
    (cloud metadata)"``, ``"::ffff:127.0.0.1 carries 127.0.0.1 (IPv4-mapped),
    which is loopback"``. The allowlist is not consulted (see
    :meth:`AddressPolicy.refusal`).
    """
    if isinstance(address, ipaddress.IPv4Address):
        why = _v4_why(address)
        return None if why is None else f"{address} is {why}"
    return _v6_reason(address)


def _v4_why(address: ipaddress.IPv4Address) -> str | None:
    for net, why in _V4_RANGES:
        if address in net:
            return f"{why} (cloud metadata)" if address in METADATA_ADDRESSES else why
    return None if address.is_global else "not globally routable (reserved)"


def _v6_reason(address: ipaddress.IPv6Address) -> str | None:
    address = ipaddress.IPv6Address(address.packed)  # a zone (%eth0) changes nothing here
    carried: tuple[str, ipaddress.IPv4Address] | None = None
    if address.ipv4_mapped is not None:
        carried = ("IPv4-mapped", address.ipv4_mapped)
    elif address in _NAT64:
        carried = ("NAT64, RFC 6052", ipaddress.IPv4Address(address.packed[-4:]))
    elif address.sixtofour is not None:
        carried = ("6to4, RFC 3056", address.sixtofour)
    if carried is not None:
        form, inner = carried
        why = _v4_why(inner)
        shown = _show_v6(address)
        return None if why is None else f"{shown} carries {inner} ({form}), which is {why}"
    for net, why in _V6_RANGES:
        if address in net:
            if address in METADATA_ADDRESSES:
                why = f"{why} (cloud metadata)"
            return f"{address} is {why}"
    if address in _IPV4_COMPATIBLE:
        inner = ipaddress.IPv4Address(address.packed[-4:])
        return f"::{inner} is IPv4-compatible (deprecated, RFC 4291), refused whatever it carries"
    if address.teredo is not None:
        server, client = address.teredo
        return f"{address} is a Teredo tunnel (RFC 4380; server {server}, client {client})"
    return None if address.is_global else f"{address} is not globally routable (reserved)"


def show_address(address: IPAddress) -> str:
    """``address`` as text, a carried IPv4 address written dotted (``::ffff:127.0.0.1``)."""
    return str(address) if isinstance(address, ipaddress.IPv4Address) else _show_v6(address)


def _show_v6(address: ipaddress.IPv6Address) -> str:
    """``address`` with a carried IPv4 address written dotted (``::ffff:127.0.0.1``)."""
    if address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    if address in _NAT64:
        return f"64:ff9b::{ipaddress.IPv4Address(address.packed[-4:])}"
    return str(address)


@final
class AllowlistError(ConfigError):
    """An allowlist entry is malformed or too wide; ``str(err)`` names the entry."""


@final
@dataclass(frozen=True)
class AllowEntry:
    """One allowlist entry: destinations in ``network``, on ``port`` (None: any port)."""

    network: IPNetwork
    port: int | None = None

    def allows(self, address: IPAddress, port: int) -> bool:
        """Whether ``address:port`` is one of this entry's destinations."""
        return (
            address.version == self.network.version
            and address in self.network
            and (self.port is None or self.port == port)
        )

    def __str__(self) -> str:
        net = str(self.network.network_address if self._single else self.network)
        if self.port is None:
            return net
        return f"[{net}]:{self.port}" if self.network.version == 6 else f"{net}:{self.port}"

    @property
    def _single(self) -> bool:
        return self.network.num_addresses == 1


def parse_allow_entry(text: str) -> AllowEntry:
    """Parse one allowlist entry: ``NETWORK_OR_ADDRESS`` or ``...:PORT``.

    IPv6 takes brackets when a port follows (``[fd00::5]:443``, ``[fd00::/64]:443``).

    Raises:
        AllowlistError: not an address or network, host bits set in a network
            (``10.1.2.3/16``), a port outside 1-65535, a network wider than
            :data:`MIN_PREFIX` allows, or one that covers cloud metadata.
    """
    entry = text.strip()
    host, port = _split_port(text, entry)
    try:
        network = ipaddress.ip_network(host, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            wanted = ipaddress.ip_network(host, strict=False)
            what = f"{host} has host bits set; did you mean {wanted}?"
        elif "/" not in host and not _looks_like_ip(host):
            what = f"{host!r} is a hostname; an allowlist names addresses, not names"
        else:
            what = f"{host!r} is not an IP address or network"
        raise AllowlistError(f"allowlist entry {text!r}: {what}") from exc
    if network.prefixlen < MIN_PREFIX[network.version]:
        raise AllowlistError(
            f"allowlist entry {text!r}: {network} is wider than "
            f"/{MIN_PREFIX[network.version]}; name the internal networks themselves"
        )
    for metadata in METADATA_ADDRESSES:
        if metadata in network:
            raise AllowlistError(
                f"allowlist entry {text!r}: {network} covers the cloud metadata "
                f"address {metadata}, which a tool may never reach"
            )
    return AllowEntry(network, port)


def _split_port(text: str, entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep:
            raise AllowlistError(f"allowlist entry {text!r}: '[' without a closing ']'")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise AllowlistError(f"allowlist entry {text!r}: expected ':PORT' after ']'")
        return host, _port(text, rest[1:])
    if entry.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has two or more
        host, _, port_text = entry.partition(":")
        return host, _port(text, port_text)
    return entry, None


def _port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise AllowlistError(f"allowlist entry {text!r}: port {port_text!r} is not 1-65535")
    return int(port_text)


def _looks_like_ip(host: str) -> bool:
    return all(c in "0123456789abcdefABCDEF.:%" for c in host)


def parse_allowlist(entries: Iterable[str]) -> tuple[AllowEntry, ...]:
    """Parse every entry (see :func:`parse_allow_entry`); raises on the first bad one."""
    return tuple(parse_allow_entry(entry) for entry in entries)


@final
@dataclass(frozen=True)
class AddressPolicy:
    """The SSRF rules plus a tenant's allowlist.

    ``enforce=False`` (:meth:`unrestricted`) lets every address through: the
    operator's own destinations (the edge functions' base URL), which keep the
    deadline, the byte cap and the ban on redirects but may be on loopback.
    """

    allowlist: tuple[AllowEntry, ...] = ()
    enforce: bool = True

    @classmethod
    def for_tenant(cls, allowlist: Iterable[str]) -> AddressPolicy:
        """The rules with a tenant's allowlist (raises :class:`AllowlistError`)."""
        return cls(parse_allowlist(allowlist))

    @classmethod
    def unrestricted(cls) -> AddressPolicy:
        """No address refused (operator configuration, see the class docstring)."""
        return cls(enforce=False)

    def refusal(self, address: IPAddress, port: int) -> str | None:
        """Why ``address:port`` may not be reached, or None when it may.

        An IPv4-mapped IPv6 address is judged (and matched against the
        allowlist) as the IPv4 address it reaches.
        """
        if not self.enforce:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            reason = blocked_reason(address)
            address = address.ipv4_mapped
        else:
            reason = blocked_reason(address)
        if reason is None or any(entry.allows(address, port) for entry in self.allowlist):
            return None
        if self.allowlist:
            return f"{reason}, and the tenant's allowlist does not name it on port {port}"
        return reason
