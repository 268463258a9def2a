"""An OpenAI Realtime server that echoes every appended audio chunk at once (load bench).

    python bench/_load_echo.py --port PORT

Cheap on purpose (asyncio + ``websockets``, no validation beyond what the
echo needs): it stands in for the provider in ``bench_load.py`` and shares the
machine's cores with what is measured. Per connection (event shapes as
:mod:`switchboard.codecs.openai_realtime` writes and parses them, GA names):

- ``session.update`` -> ``session.updated`` carrying the session it was given,
  then once per connection ``input_audio_buffer.speech_started`` (before any
  response exists, so it interrupts nothing);
- ``response.create`` -> ``response.created`` (a new id, status
  ``in_progress``, the request's ``metadata`` echoed); the response never ends;
- ``input_audio_buffer.append`` -> at once ``response.output_audio.delta``
  with the same base64 audio, inside the open response (opened on the first
  append when the client never asked for one, as the naive relay does not).

``GET /stats`` answers JSON counters: connections, those that negotiated
permessage-deflate, appends received, deltas sent.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import json
import signal
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

STATS: dict[str, int] = {"connections": 0, "deflate": 0, "open": 0, "appends": 0, "deltas": 0}
DELTA = (
    '{{"type":"response.output_audio.delta","event_id":"ev_{n}","response_id":"{rid}",'
    '"item_id":"{iid}","output_index":0,"content_index":0,"delta":"{audio}"}}'
)


def _deflate(ws: ServerConnection) -> bool:
    response = ws.response
    return response is not None and "permessage-deflate" in response.headers.get(
        "Sec-WebSocket-Extensions", ""
    )


def _created(rid: str, metadata: Any) -> str:
    response: dict[str, Any] = {
        "id": rid,
        "object": "realtime.response",
        "status": "in_progress",
        "output": [],
    }
    if metadata:
        response["metadata"] = metadata
    return json.dumps({"type": "response.created", "event_id": f"ev_c{rid}", "response": response})


async def handle(ws: ServerConnection) -> None:
    STATS["connections"] += 1
    STATS["open"] += 1
    STATS["deflate"] += _deflate(ws)
    number = STATS["connections"]
    rid, iid = "", f"item_{number}"
    sent = 0
    spoke = False
    try:
        async for message in ws:
            event = json.loads(message)
            kind = event.get("type")
            if kind == "input_audio_buffer.append":
                if not rid:
                    rid = f"resp_{number}"
                    await ws.send(_created(rid, None))
                sent += 1
                STATS["appends"] += 1
                STATS["deltas"] += 1
                await ws.send(DELTA.format(n=sent, rid=rid, iid=iid, audio=event["audio"]))
            elif kind == "session.update":
                updated = {"type": "session.updated", "event_id": f"ev_s{number}"}
                updated["session"] = event.get("session", {})
                await ws.send(json.dumps(updated))
                if not spoke:
                    spoke = True
                    started = {
                        "type": "input_audio_buffer.speech_started",
                        "event_id": f"ev_v{number}",
                        "audio_start_ms": 0,
                        "item_id": f"item_in_{number}",
                    }
                    await ws.send(json.dumps(started))
            elif kind == "response.create" and not rid:
                rid = f"resp_{number}"
                await ws.send(_created(rid, (event.get("response") or {}).get("metadata")))
    except ConnectionClosed:
        pass
    finally:
        STATS["open"] -= 1


def stats_page(ws: ServerConnection, request: Request) -> Response | None:
    if request.path != "/stats":
        return None
    body = json.dumps(STATS).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(http.HTTPStatus.OK.value, "OK", headers, body)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    # ping_interval=None: the runtime's client answers pings, but the echo needs none.
    async with serve(
        handle, "127.0.0.1", port, process_request=stats_page, ping_interval=None, max_queue=64
    ):
        print(f"echo listening on {port}", flush=True)
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
