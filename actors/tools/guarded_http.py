"""An HTTP client for URLs the runtime does not trust (a tenant's webhooks).

One :meth:`GuardedHttp.exchange` is one request and its whole answer, under
these rules:

- only ``http`` and ``https`` URLs;
- the host is resolved ONCE (:class:`Resolver`; an IP literal is not
  resolved), every address returned is checked against an
  :class:`~.address_policy.AddressPolicy`, and the request connects to a
  checked address: a second lookup never happens, so a name that answers
  differently the next time (DNS rebinding) changes nothing. If ANY address is
  refused, the request is refused: a name that mixes public and internal
  addresses is either misconfigured or an attack, and quietly keeping the
  public ones would hide both. The URL's host stays in the ``Host`` header and
  in TLS (SNI and the certificate check);
- one deadline for the whole exchange: lookup, connect, TLS, request, headers
  and body (a server that drips one byte at a time gains nothing);
- a byte cap on the answer, read as a stream and abandoned past the cap; the
  client asks for ``Accept-Encoding: identity`` and refuses compressed answers
  (a small gzip body can inflate a thousand-fold);
- no redirect is followed: a 3xx answer is a refusal that names its ``Location``;
- no proxy from the environment (``trust_env=False``).

The connection is made by an :class:`httpcore.AsyncNetworkBackend` pinned to
the checked addresses, under an httpx transport built on
:class:`httpcore.AsyncConnectionPool` (:mod:`.pinned_transport`). Each
exchange has a pool of its own and closes it: no connection outlives the
exchange whose checks it passed (the cost: a new TCP connection, and TLS
handshake, per tool call; see ``bench/bench_tool_http.py``).

Exceptions (:class:`GuardedHttpError` is a :class:`ToolError`)::

    GuardedHttpError        kind
    ├── DestinationRefused  "refused"    a bad scheme, an address the rules refuse
    │   └── RedirectRefused                a 3xx answer (its Location not followed)
    ├── ExchangeTimedOut    "timeout"    the deadline passed
    ├── AnswerTooLarge      "too_large"  the answer passed the byte cap
    └── NetworkFailure      "network"    no lookup answer, connect refused, connection dropped
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import httpcore
import httpx
import trio

from switchboard.orchestrator.errors import ToolError

from .address_policy import AddressPolicy, IPAddress, show_address
from .pinned_transport import BudgetSpent, PinnedBackend, PoolTransport, ReadBudget

__all__ = [
    "AnswerTooLarge",
    "DestinationRefused",
    "ExchangeTimedOut",
    "GuardedHttp",
    "GuardedHttpError",
    "HttpAnswer",
    "NetworkFailure",
    "RedirectRefused",
    "Resolver",
    "SystemResolver",
]


class GuardedHttpError(ToolError):
    """An exchange that did not give an answer; ``kind`` is the tool error's kind."""

    kind: ClassVar[str] = "network"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


class DestinationRefused(GuardedHttpError):  # noqa: N818 - what happened to the request
    kind = "refused"


class RedirectRefused(DestinationRefused):
    """The server answered 3xx; ``detail["location"]`` says where it pointed."""


class ExchangeTimedOut(GuardedHttpError):  # noqa: N818 - what happened to the request
    kind = "timeout"


class AnswerTooLarge(GuardedHttpError):  # noqa: N818 - what happened to the answer
    kind = "too_large"


class NetworkFailure(GuardedHttpError):  # noqa: N818 - what happened to the connection
    kind = "network"


class Resolver(Protocol):
    """Turns a host name into addresses (the one lookup of an exchange)."""

    async def resolve(self, host: str, port: int) -> list[str]:
        """The host's addresses as text (``"93.184.216.34"``, ``"2606:2800::1"``).

        Raises:
            OSError: the name does not resolve (``socket.gaierror``).
        """
        ...


class SystemResolver:
    """The system's resolver, through :func:`trio.socket.getaddrinfo` (a worker thread)."""

    async def resolve(self, host: str, port: int) -> list[str]:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses: list[str] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            address = str(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
        return addresses


@dataclass(frozen=True)
class HttpAnswer:
    """An answer read whole: ``status``, ``headers``, ``body`` (at most the cap),
    ``address`` (``ip:port``, IPv6 in brackets, the peer the request went to)."""

    status: int
    headers: httpx.Headers
    body: bytes
    address: str


class GuardedHttp:
    """The client (see the module docstring); one per runtime is enough.

    Args:
        resolver: the one lookup of each exchange (default :class:`SystemResolver`).
        ssl_context: for ``https`` (default: the system's trust store, hostname checked).
        network_backend: opens TCP connections (default httpcore's Trio backend);
            a test wraps it to see every connection attempted.
    """

    def __init__(
        self,
        resolver: Resolver | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._resolver = resolver if resolver is not None else SystemResolver()
        self._ssl_context = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._backend = network_backend if network_backend is not None else httpcore.TrioBackend()

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes,
        policy: AddressPolicy,
        timeout_s: float,
        max_bytes: int,
    ) -> HttpAnswer:
        """Send one request and read its whole answer (at most ``max_bytes`` of body).

        Returns the answer whatever its status, except a redirect.

        Raises:
            DestinationRefused, ExchangeTimedOut, AnswerTooLarge, NetworkFailure
            (see the module docstring); never an httpx or httpcore exception.
        """
        target = _target(url)
        try:
            with trio.fail_after(timeout_s):
                addresses = await self._checked_addresses(target, policy)
                return await self._send(
                    target, addresses, method, headers, content, max_bytes=max_bytes
                )
        except trio.TooSlowError:
            raise ExchangeTimedOut(
                f"no complete answer from {target.host} within {timeout_s:g} s",
                timeout_ms=round(timeout_s * 1000),
            ) from None

    async def _checked_addresses(self, target: _Target, policy: AddressPolicy) -> list[IPAddress]:
        try:
            literal: IPAddress | None = ipaddress.ip_address(target.host)
        except ValueError:
            literal = None
        if literal is not None:
            found = [literal]
        else:
            try:
                answers = await self._resolver.resolve(target.host, target.port)
                found = [ipaddress.ip_address(a) for a in answers]
            except (OSError, ValueError) as exc:
                raise NetworkFailure(
                    f"{target.host} does not resolve ({exc})", host=target.host
                ) from exc
            if not found:
                raise NetworkFailure(f"{target.host} has no address", host=target.host)
        for address in found:
            reason = policy.refusal(address, target.port)
            if reason is not None:
                said = f"{target.host} resolves to an address that is refused: {reason}"
                raise DestinationRefused(
                    reason if literal is not None else said,
                    host=target.host,
                    address=show_address(address),
                    rule=reason,
                )
        return found

    async def _send(
        self,
        target: _Target,
        addresses: list[IPAddress],
        method: str,
        headers: Mapping[str, str],
        content: bytes,
        *,
        max_bytes: int,
    ) -> HttpAnswer:
        budget = ReadBudget(max_bytes)
        backend = PinnedBackend(self._backend, target.host, addresses, budget)
        pool = httpcore.AsyncConnectionPool(
            ssl_context=self._ssl_context, network_backend=backend, retries=0
        )
        transport = PoolTransport(pool)
        request_headers = {**headers, "accept-encoding": "identity"}
        try:
            async with (
                httpx.AsyncClient(
                    transport=transport, trust_env=False, follow_redirects=False, timeout=None
                ) as client,
                client.stream(method, target.url, headers=request_headers, content=content) as r,
            ):
                _check_head(target, r, max_bytes)
                body = await _read_capped(r.aiter_raw(), max_bytes)
                return HttpAnswer(r.status_code, r.headers, body, backend.connected_to)
        except BudgetSpent as exc:
            raise _too_large(max_bytes, exc.bytes_read) from None
        except httpx.TransportError as exc:
            where = (
                f"{target.host} ({backend.connected_to})" if backend.connected_to else target.host
            )
            raise NetworkFailure(
                f"the exchange with {where} failed: {_why(exc)}",
                host=target.host,
            ) from exc


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    host: str
    port: int


def _target(url: str) -> _Target:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise DestinationRefused(f"{url!r} is not a URL ({exc})", url=url) from exc
    if parsed.scheme not in ("http", "https"):
        raise DestinationRefused(
            f"only http and https URLs may be called, not {parsed.scheme or 'no'} scheme",
            url=url,
        )
    host = parsed.raw_host.decode("ascii")  # an internationalised name as IDNA (punycode)
    if not host:
        raise DestinationRefused(f"{url!r} names no host", url=url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return _Target(parsed, host, port)


def _check_head(target: _Target, response: httpx.Response, max_bytes: int) -> None:
    if 300 <= response.status_code < 400:
        location = response.headers.get("location", "")
        raise RedirectRefused(
            f"{target.host} answered HTTP {response.status_code} redirecting to "
            f"{location or '(no Location)'}; redirects are not followed",
            status=response.status_code,
            location=location,
        )
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise NetworkFailure(
            f"{target.host} sent a {encoding}-encoded answer although identity was asked",
            content_encoding=encoding,
        )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise AnswerTooLarge(
            f"{target.host} announced {int(declared)} bytes, more than the {max_bytes} allowed",
            max_bytes=max_bytes,
            content_length=int(declared),
        )


async def _read_capped(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """The whole body, or :class:`AnswerTooLarge`.

    The connection itself stops a body far past the cap (a
    :class:`~.pinned_transport.ReadBudget`); the exact check is made here,
    once the body is in (raising mid-stream would abandon httpx's and
    httpcore's stream generators).
    """
    body = bytearray()
    async for chunk in chunks:
        body += chunk
    if len(body) > max_bytes:
        raise _too_large(max_bytes, len(body))
    return bytes(body)


def _too_large(max_bytes: int, bytes_read: int) -> AnswerTooLarge:
    return AnswerTooLarge(
        f"the answer passed the {max_bytes}-byte cap; reading stopped",
        max_bytes=max_bytes,
        bytes_read=bytes_read,
    )


def _why(exc: BaseException) -> str:
    """What went wrong, from ``exc`` and its causes (httpcore and trio often wrap
    the telling error, such as an SSL certificate failure, in an empty one)."""
    said: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(said) < 4:
        text = str(seen).strip()
        if text and text not in said:
            said.append(text)
        seen = seen.__cause__ or seen.__context__
    return ": ".join(said) or type(exc).__name__
