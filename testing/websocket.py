"""Reaching a fake provider: over a real loopback socket, or over a memory stream.

A fake is a WebSocket handler, ``async def handler(request: WebSocketRequest)``
(trio-websocket's server-side type: it can ``reject`` the handshake with an
HTTP status or ``accept`` it). :func:`serve` puts it on a TCP port;
:func:`memory_connector` gives the runtime a
:data:`~switchboard.actors.providers.WebSocketConnector` that reaches it
through ``trio.testing.memory_stream_pair``, so tests run on Trio's MockClock
with real WebSocket framing and no sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from urllib.parse import urlsplit

import trio
import trio.testing
import trio_websocket

__all__ = ["Handler", "memory_connector", "memory_router", "serve"]

Handler = Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]
Connector = Callable[
    [str, Sequence[tuple[str, str]]],
    AbstractAsyncContextManager[trio_websocket.WebSocketConnection],
]

MAX_MESSAGE_SIZE = 16 * 1024 * 1024


async def serve(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on ``host:port`` until cancelled; ``started()`` with the bound port."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_websocket.serve_websocket(
                handler,
                host,
                port,
                None,
                max_message_size=MAX_MESSAGE_SIZE,
                task_status=task_status,
            )
        )
        task_status.started(server.port)


def memory_router(routes: Mapping[str, Handler]) -> Connector:
    """A connector that reaches the fake named by the URL's host name (``routes[host]``).

    For a fallback chain of fakes in one test: ``OPENAI_REALTIME_URL`` of
    ``wss://openai.fake/v1/realtime`` and ``GEMINI_LIVE_URL`` of
    ``wss://gemini.fake/ws`` reach two fakes in memory. An unknown host
    raises ``OSError``, as an unreachable one would.
    """
    connectors = {host: memory_connector(handler) for host, handler in routes.items()}

    def connect(
        url: str, headers: Sequence[tuple[str, str]]
    ) -> AbstractAsyncContextManager[trio_websocket.WebSocketConnection]:
        host = urlsplit(url).hostname or ""
        if host not in connectors:
            raise OSError(f"no fake serves {host!r}")
        return connectors[host](url, headers)

    return connect


def memory_connector(handler: Handler) -> Connector:
    """A connector whose every connection is served by ``handler`` in memory.

    The URL's path and query reach the handler as ``request.path``; the
    headers as ``request.headers``. A handler that rejects the handshake makes
    the connector raise ``trio_websocket.ConnectionRejected``, as a real
    server would.
    """

    @asynccontextmanager
    async def connect(
        url: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        parts = urlsplit(url)
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        client_stream, server_stream = trio.testing.memory_stream_pair()
        try:
            async with trio.open_nursery() as nursery:

                async def serve_one() -> None:
                    request = await trio_websocket.wrap_server_stream(
                        nursery, server_stream, max_message_size=MAX_MESSAGE_SIZE
                    )
                    await handler(request)

                nursery.start_soon(serve_one)
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    client_stream,  # type: ignore[arg-type]  # any trio Stream works
                    parts.hostname or "localhost",
                    resource,
                    extra_headers=[(k.encode(), v.encode()) for k, v in headers],
                    max_message_size=MAX_MESSAGE_SIZE,
                )
                try:
                    yield ws
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(1):
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # A refused handshake surfaces from trio-websocket's reader task; raise it
            # bare, as open_websocket_url does.
            rejected, rest = group.split(trio_websocket.ConnectionRejected)
            if rejected is None or rest is not None:
                raise
            raise _first_leaf(rejected) from None

    return connect


def _first_leaf(group: BaseExceptionGroup[trio_websocket.ConnectionRejected]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
