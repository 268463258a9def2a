"""The in-memory connector reaches a fake with real WebSocket framing, on MockClock."""

from __future__ import annotations

import pytest
import trio
import trio_websocket

from switchboard.actors.providers import connect_websocket
from switchboard.testing import memory_connector, serve


async def echo(request: trio_websocket.WebSocketRequest) -> None:
    if request.path.endswith("busy"):
        await request.reject(503, body=b"overloaded")
        return
    ws = await request.accept()
    auth = dict(request.headers).get(b"authorization", b"").decode()
    await ws.send_message(f"{request.path} {auth}")
    async for message in _messages(ws):
        await ws.send_message(message)


async def _messages(ws: trio_websocket.WebSocketConnection):  # type: ignore[no-untyped-def]
    try:
        while True:
            yield await ws.get_message()
    except trio_websocket.ConnectionClosed:
        return


async def test_memory_connector_carries_path_headers_and_messages(autojump_clock: object) -> None:
    connect = memory_connector(echo)
    async with connect(
        "wss://api.example/v1/realtime?model=m", [("Authorization", "Bearer k")]
    ) as ws:
        assert await ws.get_message() == "/v1/realtime?model=m Bearer k"
        await ws.send_message("hello")
        assert await ws.get_message() == "hello"


async def test_memory_connector_reports_a_refused_handshake(autojump_clock: object) -> None:
    connect = memory_connector(echo)
    with pytest.raises(trio_websocket.ConnectionRejected) as caught:
        async with connect("wss://api.example/busy", []):
            pass
    assert caught.value.status_code == 503


async def test_serve_on_loopback_with_the_real_connector() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, echo)
        async with connect_websocket(f"ws://127.0.0.1:{port}/x", [("Authorization", "t")]) as ws:
            assert await ws.get_message() == "/x t"
        nursery.cancel_scope.cancel()
