"""The naive relay reference of ``bench_load.py``: Twilio Media Streams <-> OpenAI Realtime.

    python bench/_load_naive.py --port PORT --upstream ws://127.0.0.1:ECHO/v1/realtime

One asyncio process with the ``websockets`` library, what a first relay
looks like: it accepts the Twilio stream WebSocket (no webhook, no admission,
no events, no failover), opens a WebSocket to the provider per call on
``start``, sends ``session.update`` (G.711 mu-law both ways), relays each
``media`` payload as ``input_audio_buffer.append`` and each
``response.output_audio.delta`` back as ``media``: JSON and base64, nothing
more. Compression is off on both legs (what issue 10 asks of the runtime:
base64 audio does not compress).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

SESSION = json.dumps(
    {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "audio": {
                "input": {"format": {"type": "audio/pcmu"}},
                "output": {"format": {"type": "audio/pcmu"}},
            },
        },
    }
)
APPEND = '{{"type":"input_audio_buffer.append","audio":"{audio}"}}'
MEDIA = '{{"event":"media","streamSid":"{sid}","media":{{"payload":"{payload}"}}}}'


async def upstream_to_twilio(
    upstream: ClientConnection, twilio: ServerConnection, sid: str
) -> None:
    try:
        async for text in upstream:
            event = json.loads(text)
            if event.get("type") == "response.output_audio.delta":
                await twilio.send(MEDIA.format(sid=sid, payload=event["delta"]))
    except ConnectionClosed:
        pass


async def relay(twilio: ServerConnection, url: str) -> None:
    upstream: ClientConnection | None = None
    back: asyncio.Task[None] | None = None
    try:
        async for text in twilio:
            message = json.loads(text)
            event = message.get("event")
            if event == "media" and upstream is not None:
                await upstream.send(APPEND.format(audio=message["media"]["payload"]))
            elif event == "start":
                upstream = await connect(url, compression=None, ping_interval=None)
                await upstream.send(SESSION)
                back = asyncio.ensure_future(
                    upstream_to_twilio(upstream, twilio, message["start"]["streamSid"])
                )
            elif event == "stop":
                break
    except ConnectionClosed:
        pass
    finally:
        if back is not None:
            back.cancel()
        if upstream is not None:
            await upstream.close()
        await twilio.close()


async def main(port: int, url: str) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)

    async def handler(ws: ServerConnection) -> None:
        await relay(ws, url)

    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None):
        print(f"naive relay listening on {port}", flush=True)
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.upstream))
