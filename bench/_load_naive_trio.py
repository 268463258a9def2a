"""The stack's floor for ``bench_load.py``: the naive relay on Switchboard's own libraries.

    python bench/_load_naive_trio.py --port PORT --upstream ws://127.0.0.1:ECHO/v1/realtime

The job of ``_load_naive.py`` (accept the Twilio stream, open the provider
WebSocket on ``start``, send ``session.update``, relay each ``media`` payload as
``input_audio_buffer.append`` and each ``response.output_audio.delta`` back as
``media``; JSON and base64, nothing more), done with the libraries the runtime
is built on: a raw ASGI app under hypercorn on Trio for the Twilio leg (wsproto
framing, permessage-deflate declined as the runtime does) and trio-websocket
for the provider leg. No webhook, no admission, no events, no actors, no
failover, no playout clock, no marks: what any relay on this stack pays per
frame, so the runtime's own share is the difference.
"""

from __future__ import annotations

import argparse
import json
import signal
from typing import Any

import trio
import trio_websocket
from _load_naive import APPEND, MEDIA, SESSION  # the same job, word for word
from hypercorn.config import Config
from hypercorn.trio import serve

from switchboard.orchestrator.ws_compression import refuse_permessage_deflate

Scope = dict[str, Any]
Receive = Any
Send = Any


async def upstream_to_twilio(
    upstream: trio_websocket.WebSocketConnection, send: Send, sid: str
) -> None:
    try:
        while True:
            event = json.loads(await upstream.get_message())
            if event.get("type") == "response.output_audio.delta":
                text = MEDIA.format(sid=sid, payload=event["delta"])
                await send({"type": "websocket.send", "text": text})
    except trio_websocket.ConnectionClosed:
        pass


async def relay(url: str, receive: Receive, send: Send) -> None:
    await send({"type": "websocket.accept"})
    async with trio.open_nursery() as nursery:
        upstream: trio_websocket.WebSocketConnection | None = None
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                break
            event = json.loads(message.get("text") or message.get("bytes") or "{}")
            kind = event.get("event")
            if kind == "media" and upstream is not None:
                await upstream.send_message(APPEND.format(audio=event["media"]["payload"]))
            elif kind == "start":
                upstream = await trio_websocket.connect_websocket_url(nursery, url)
                await upstream.send_message(SESSION)
                nursery.start_soon(upstream_to_twilio, upstream, send, event["start"]["streamSid"])
            elif kind == "stop":
                break
        if upstream is not None:
            await upstream.aclose()
        await send({"type": "websocket.close", "code": 1000})
        nursery.cancel_scope.cancel()


def app(url: str) -> Any:
    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await relay(url, receive, send)
        elif scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    return asgi


async def main(port: int, url: str) -> None:
    refuse_permessage_deflate()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, app(url), config)
        print(f"naive trio relay listening on {port}", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    trio.run(main, args.port, args.upstream)
