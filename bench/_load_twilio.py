"""The Twilio side of a load-bench call: the signed webhook, the Media Stream, the phone.

For ``bench_load.py``'s callers (asyncio + ``websockets`` + ``httpx``: not the
product, and cheap). As Twilio places a call (Media Streams docs, "WebSocket
Messages"; Twilio, "Webhooks security"):

1. ``POST /twilio/incoming``, form-encoded, signed with ``X-Twilio-Signature``
   (``twilio.request_validator.RequestValidator.compute_signature``); the
   TwiML answer gives ``<Connect><Stream url=...>`` and its ``<Parameter>``s.
   ``<Reject>``, a ``<Say>``/``<Hangup>`` without a stream, or HTTP 503/429
   raise :class:`CallRefusedError`, apart from failures. (The naive relay has
   no webhook: its calls go straight to the stream.)
2. The stream WebSocket, offering permessage-deflate as ordinary clients do
   (the ``websockets`` default): ``connected``, ``start`` with the
   parameters, then ``media`` frames and ``stop``. A handshake refused with
   503, or a close with 1013 (try again later), is a refusal too.
3. The loudspeaker (:class:`Phone`): agent ``media`` plays on a clock at real
   time from the first agent audio (20 ms per 160 bytes); a ``mark`` is
   echoed once the audio received before it has played (checked at each
   20 ms tick of the caller's microphone); a ``clear`` echoes every pending
   mark at once and resets the clock.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

FRAME_BYTES = 160
FRAME_S = 0.02
SILENCE = b"\xff" * FRAME_BYTES
TRY_AGAIN_LATER = 1013

MEDIA = (
    '{{"event":"media","sequenceNumber":"{seq}","streamSid":"{sid}","media":'
    '{{"track":"inbound","chunk":"{chunk}","timestamp":"{ts}","payload":"{payload}"}}}}'
)
MARK = '{{"event":"mark","sequenceNumber":"{seq}","streamSid":"{sid}","mark":{{"name":{name}}}}}'


class CallRefusedError(Exception):
    """The runtime declined the call (busy TwiML, 503, close 1013)."""


class CallFailedError(Exception):
    """The call went wrong (anything that is not a refusal)."""


def sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class Dialed:
    ws: ClientConnection
    stream_sid: str
    call_sid: str
    session_id: str | None
    deflate: bool


async def webhook(
    client: httpx.AsyncClient, base_url: str, token: str, to_number: str, call_sid: str
) -> tuple[str, dict[str, str]]:
    """POST the signed voice webhook; the ``<Stream>`` URL and its parameters.

    Raises:
        CallRefusedError: busy TwiML or HTTP 503/429.
        CallFailedError: anything else that is not a stream.
    """
    url = base_url.rstrip("/") + "/twilio/incoming"
    params = {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15005550001",
        "To": to_number,
        "Direction": "inbound",
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
    }
    signature = RequestValidator(token).compute_signature(url, params)
    try:
        response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
    except httpx.HTTPError as exc:
        raise CallFailedError(f"webhook: {type(exc).__name__}") from None
    if response.status_code in (503, 429):
        raise CallRefusedError(f"webhook HTTP {response.status_code}")
    if response.status_code != 200:
        raise CallFailedError(f"webhook HTTP {response.status_code}")
    root = ET.fromstring(response.text)
    if root.find("Reject") is not None:
        raise CallRefusedError("TwiML <Reject>")
    stream = root.find("./Connect/Stream")
    if stream is None:
        said = " ".join(e.text or "" for e in root.iter("Say"))
        if root.find("Hangup") is not None or said:
            raise CallRefusedError(f"TwiML says: {said[:60]}")
        raise CallFailedError("TwiML without a stream")
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), parameters


async def dial(
    client: httpx.AsyncClient | None, plan: dict[str, Any], to_number: str
) -> tuple[Dialed, int]:
    """Webhook (unless ``plan["stream_url"]`` is given), WebSocket, ``connected``, ``start``."""
    call_sid, stream_sid = sid("CA"), sid("MZ")
    if plan.get("stream_url"):
        url, parameters = plan["stream_url"], {}
    else:
        assert client is not None
        url, parameters = await webhook(
            client, plan["base_url"], plan["token"], to_number, call_sid
        )
    try:
        ws = await connect(url, ping_interval=None, open_timeout=20, max_queue=64)
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (503, 429):
            raise CallRefusedError(f"stream HTTP {status}") from None
        raise CallFailedError(f"stream HTTP {status}") from None
    except (OSError, TimeoutError) as exc:
        raise CallFailedError(f"stream: {type(exc).__name__}") from None
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "") if ws.response else ""
    dialed = Dialed(ws, stream_sid, call_sid, parameters.get("session_id"), "deflate" in extensions)
    await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": stream_sid,
        "start": {
            "streamSid": stream_sid,
            "accountSid": "AC" + "0" * 32,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "customParameters": parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    await ws.send(json.dumps(start))
    return dialed, 1


def closed_reason(exc: ConnectionClosed) -> Exception:
    code = exc.rcvd.code if exc.rcvd else None
    why = exc.rcvd.reason if exc.rcvd else "no close frame"
    if code == TRY_AGAIN_LATER:
        return CallRefusedError(f"closed {code} {why}")
    return CallFailedError(f"closed by server: {code} {why}"[:120])


async def stop_task(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has stopped (its outcome is not wanted)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def ended_early(ws: ClientConnection) -> Exception:
    """Why a stream the server closed normally ended before the caller hung up."""
    if ws.close_code == TRY_AGAIN_LATER:
        return CallRefusedError(f"closed {ws.close_code} {ws.close_reason}")
    return CallFailedError(f"closed by server: {ws.close_code} {ws.close_reason}"[:120])


@dataclass
class Phone:
    """The Twilio side of one stream: sequence numbers, playout clock, marks."""

    dialed: Dialed
    seq: int = 1
    chunk: int = 0
    playout_end: float = 0.0
    marks: deque[tuple[float, str]] = field(default_factory=deque)
    marks_echoed: int = 0
    clears: int = 0
    agent_frames: int = 0

    async def send_media(self, payload: bytes) -> None:
        self.seq += 1
        self.chunk += 1
        text = MEDIA.format(
            seq=self.seq,
            sid=self.dialed.stream_sid,
            chunk=self.chunk,
            ts=(self.chunk - 1) * 20,
            payload=base64.b64encode(payload).decode("ascii"),
        )
        await self.dialed.ws.send(text)

    async def flush_marks(self, now: float) -> None:
        """Echo every mark whose audio has played by ``now``."""
        marks = self.marks
        while marks and marks[0][0] <= now:
            _, name = marks.popleft()
            self.seq += 1
            self.marks_echoed += 1
            await self.dialed.ws.send(
                MARK.format(seq=self.seq, sid=self.dialed.stream_sid, name=json.dumps(name))
            )

    def heard(self, message: dict[str, Any], now: float) -> bytes | None:
        """Take one server message; the agent audio if it is ``media``."""
        event = message.get("event")
        if event == "media":
            payload = base64.b64decode(message["media"]["payload"])
            self.playout_end = max(self.playout_end, now) + len(payload) / 8000
            self.agent_frames += 1
            return payload
        if event == "mark":
            self.marks.append((self.playout_end, message["mark"]["name"]))
        elif event == "clear":
            self.clears += 1
            self.marks = deque((now, name) for _, name in self.marks)
            self.playout_end = now
        return None

    async def stop(self) -> None:
        self.seq += 1
        stop = {
            "event": "stop",
            "sequenceNumber": str(self.seq),
            "streamSid": self.dialed.stream_sid,
            "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.dialed.call_sid},
        }
        await self.dialed.ws.send(json.dumps(stop))


async def hang_up(phone: Phone) -> None:
    """Send ``stop`` and close the WebSocket, as Twilio does when the caller hangs up."""
    try:
        await phone.stop()
    except ConnectionClosed:
        pass
    await phone.dialed.ws.close()
