"""The connection under :class:`~.guarded_http.GuardedHttp`: httpx over an httpcore
pool whose network backend connects the URL's host to addresses checked
beforehand, and counts what each connection reads.

- :class:`PinnedBackend` (an :class:`httpcore.AsyncNetworkBackend`): the pool
  asks it to connect ``host:port``; it connects to the checked addresses, in
  order, never looking the name up (TLS, started later by httpcore, still
  uses the URL's host for SNI and the certificate check);
- :class:`ReadBudget`: every read on the connection (after TLS) is counted, and
  past the budget the read itself raises :class:`BudgetSpent`, so httpx's and
  httpcore's stream generators end with the exception instead of being
  abandoned mid-body;
- :class:`PoolTransport`: the httpx transport over that pool (httpx's own
  ``AsyncHTTPTransport``, less its proxy choices, which takes no backend),
  mapping httpcore's exceptions to httpx's.

Written against httpx 0.28+ and httpcore 1.0 (``AsyncConnectionPool(network_backend=...)``).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpcore
import httpx
import trio

from .address_policy import IPAddress

__all__ = [
    "HEAD_ALLOWANCE",
    "BudgetSpent",
    "PinnedBackend",
    "PoolTransport",
    "ReadBudget",
]


HEAD_ALLOWANCE = 64 * 1024
"""Bytes a connection may carry besides the body: status line, headers (h11
refuses more than 16 KiB of them), chunk framing."""


class BudgetSpent(Exception):  # noqa: N818 - what happened to the connection
    """A connection read past its :class:`ReadBudget` (raised from inside the read)."""

    def __init__(self, max_bytes: int, bytes_read: int) -> None:
        super().__init__(f"{bytes_read} bytes read, more than {max_bytes} and the head allowed")
        self.max_bytes = max_bytes
        self.bytes_read = bytes_read


class ReadBudget:
    """Bytes one connection may read: a body cap plus :data:`HEAD_ALLOWANCE`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.read = 0

    def spend(self, count: int) -> None:
        """Count ``count`` bytes read; raises :class:`BudgetSpent` past the budget."""
        self.read += count
        if self.read > self.max_bytes + HEAD_ALLOWANCE:
            raise BudgetSpent(self.max_bytes, self.read)


class _CappedStream(httpcore.AsyncNetworkStream):
    """A connection that raises :class:`BudgetSpent` once its budget is spent."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, budget: ReadBudget) -> None:
        self._inner = inner
        self._budget = budget

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._inner.read(max_bytes, timeout)
        self._budget.spend(len(data))
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _CappedStream(tls, self._budget)  # count what TLS decrypts, not the records

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _peer(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects ``host`` to the addresses already checked, in order, never to another."""

    def __init__(
        self,
        inner: httpcore.AsyncNetworkBackend,
        host: str,
        addresses: Iterable[IPAddress],
        budget: ReadBudget,
    ) -> None:
        self._inner = inner
        self._host = host
        self._addresses = tuple(addresses)
        self._budget = budget
        self.connected_to = ""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host.lower() != self._host.lower():  # the pool only ever asks for the URL's host
            raise httpcore.ConnectError(f"{host} is not the checked host {self._host}")
        failure: Exception = httpcore.ConnectError(f"{host} has no checked address")
        for address in self._addresses:
            try:
                stream = await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            self.connected_to = _peer(address, port)
            return _CappedStream(stream, self._budget)
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("a guarded exchange never uses a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


class PoolTransport(httpx.AsyncBaseTransport):
    """An httpx transport on an httpcore pool (httpx's own, less the proxy choices)."""

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = await self._pool.handle_async_request(core_request)
        except httpcore.TimeoutException as exc:
            raise httpx.TimeoutException(str(exc), request=request) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise httpx.TransportError(str(exc), request=request) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_stream():
                yield chunk
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise httpx.ReadError(str(exc)) from exc

    async def aclose(self) -> None:
        await self._response.aclose()
