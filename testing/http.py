"""Reaching an HTTP fake: in memory through httpx, or on a real loopback port.

An HTTP fake is an async handler, ``async def handler(request: httpx.Request)
-> httpx.Response``, whose response may stream (``content=`` an async
iterator of bytes). In tests, give it to ``httpx.MockTransport`` so calls run
on Trio's MockClock without sockets::

    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))

:func:`asgi_app` turns the same handler into an ASGI application and
:func:`serve_http` serves it with hypercorn on ``host:port`` (port 0: any
free one), for an end-to-end test or a manual try. An exception raised while
the body streams drops the connection (the ``drop`` fault).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

__all__ = ["HttpHandler", "asgi_app", "serve_http"]

HttpHandler = Callable[[httpx.Request], Awaitable[httpx.Response]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})


def asgi_app(handler: HttpHandler) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI 3 application that answers every HTTP request with ``handler``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        host = dict(scope["headers"]).get(b"host", b"localhost").decode()
        query = scope.get("query_string", b"").decode()
        request = httpx.Request(
            scope["method"],
            f"http://{host}{scope['path']}" + (f"?{query}" if query else ""),
            headers=[(k.decode(), v.decode()) for k, v in scope["headers"]],
            content=body,
        )
        response = await handler(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in _FRAMING],
            }
        )
        if response.is_stream_consumed:  # built with its whole body (json=, content=bytes)
            await send({"type": "http.response.body", "body": response.content, "more_body": True})
        else:
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def serve_http(
    handler: HttpHandler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` with hypercorn until cancelled; ``started()`` with its base URL."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(serve, asgi_app(handler), config)
        task_status.started(urls[0])
