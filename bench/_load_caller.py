"""Simulated Twilio callers for ``bench_load.py``: the webhook, the Media Stream, the phone.

Not the product: asyncio + ``websockets`` + ``httpx``, kept cheap because the
load generator shares the cores with what it measures. Each client process
(:func:`client_main`) runs many calls in one event loop. A call, as Twilio
places it (Media Streams docs, "WebSocket Messages"):

1. ``POST /twilio/incoming``, form-encoded, signed with ``X-Twilio-Signature``
   (``twilio.request_validator.RequestValidator.compute_signature``); the
   TwiML answer gives ``<Connect><Stream url=...>`` and its ``<Parameter>``s.
   ``<Reject>``, a ``<Say>``/``<Hangup>`` without a stream, or HTTP 503/429
   count as *refused*, apart from failures. (The naive relay has no webhook:
   its calls go straight to the stream.)
2. The stream WebSocket, offering permessage-deflate as ordinary clients do
   (the ``websockets`` default): ``connected``, ``start`` with the
   parameters, then 160-byte G.711 mu-law ``media`` frames every 20 ms on an
   absolute schedule (``t0 + k * 20 ms``, never drifting), then ``stop``.
   A handshake refused with 503, or a close with 1013 (try again later),
   counts as refused.
3. The loudspeaker: agent ``media`` plays on a clock at real time from the
   first agent audio (20 ms per 160 bytes); a ``mark`` is echoed once the
   audio received before it has played (checked at each 20 ms tick); a
   ``clear`` echoes every pending mark at once and resets the clock.

Relay calls (:class:`RelayCall`) send distinguishable frames: bytes 0-1 a
magic, 2-5 the call's id, 6-9 the frame counter (big-endian), the rest mu-law
silence; an agent frame carrying this call's id and a counter is that frame's
echo, anything else (a greeting) is ignored for delay. Echo delay = receive
time of the first echo of frame k - send time of frame k.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import resource
import secrets
import struct
import time
import xml.etree.ElementTree as ET
from array import array
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
MAGIC = b"LB"
ECHO_GRACE_S = 2.0  # after the last frame, how long echoes may still come before `stop`
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


def frame_payload(call_id: int, k: int) -> bytes:
    return MAGIC + struct.pack(">II", call_id, k) + SILENCE[10:]


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


async def hang_up(phone: Phone, wait_s: float = 5.0) -> None:
    """Send ``stop`` and wait (a while) for the server to close, as Twilio does."""
    ws = phone.dialed.ws
    try:
        await phone.stop()
        async with asyncio.timeout(wait_s):
            async for _ in ws:
                pass
    except (ConnectionClosed, TimeoutError):
        pass
    await ws.close()


class RelayCall:
    """One relay call: ``frames`` distinguishable frames, echoes matched by content."""

    def __init__(self, call_id: int, frames: int) -> None:
        self.call_id = call_id
        self.frames = frames
        self.sent_at = array("d", [math.nan]) * frames
        self.echo_at = array("d", [math.nan]) * frames
        self.late_s = array("d")  # per frame: actual send time - scheduled time
        self.echoed = 0
        self.other = 0  # agent frames that are not an echo of this call (the greeting)
        self.sent = 0

    async def run(self, phone: Phone) -> tuple[float, float]:
        """Stream, collect echoes, hang up; (start, end) of the stream (monotonic s)."""
        loop = asyncio.get_running_loop()
        receiver = asyncio.ensure_future(self._receive(phone))
        t0 = loop.time()
        try:
            for k in range(self.frames):
                due = t0 + k * FRAME_S
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if receiver.done():
                    break
                now = loop.time()
                await phone.flush_marks(now)
                self.late_s.append(now - due)
                self.sent_at[k] = loop.time()
                await phone.send_media(frame_payload(self.call_id, k))
                self.sent += 1
            grace_end = loop.time() + ECHO_GRACE_S
            while self.echoed < self.sent and loop.time() < grace_end and not receiver.done():
                await asyncio.sleep(FRAME_S)
                await phone.flush_marks(loop.time())
            end = loop.time()
            if receiver.done():
                receiver.result()  # raises why the server closed
            await stop_task(receiver)
            await hang_up(phone)
            return t0, end
        except ConnectionClosed as exc:
            raise closed_reason(exc) from None
        finally:
            await stop_task(receiver)

    async def _receive(self, phone: Phone) -> None:
        loop = asyncio.get_running_loop()
        key = MAGIC + struct.pack(">I", self.call_id)
        try:
            async for text in phone.dialed.ws:
                now = loop.time()
                payload = phone.heard(json.loads(text), now)
                if payload is None:
                    continue
                if payload[:6] != key:
                    self.other += 1
                    continue
                (k,) = struct.unpack_from(">I", payload, 6)
                if k < self.frames and math.isnan(self.echo_at[k]):
                    self.echo_at[k] = now
                    self.echoed += 1
        except ConnectionClosed as exc:
            raise closed_reason(exc) from None
        raise ended_early(phone.dialed.ws)  # the server closed the stream under us

    def delays_ms(self) -> array[float]:
        return array(
            "f",
            (
                1000.0 * (e - s)
                for s, e in zip(self.sent_at, self.echo_at, strict=True)
                if not math.isnan(e)
            ),
        )


async def relay_call(client: httpx.AsyncClient | None, plan: dict[str, Any], index: int) -> dict:
    """Place one relay call at ``plan["starts"][index]``; its result as a dict."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, plan["starts"][index] - loop.time()))
    return await one_relay_call(client, plan, plan["id_base"] + index, plan["seconds"])


async def soak_slot(client: httpx.AsyncClient | None, plan: dict[str, Any], index: int) -> dict:
    """One line of a soak: calls of ``plan["seconds"]`` back to back until ``plan["end_at"]``."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, plan["starts"][index] - loop.time()))
    total: dict[str, Any] = {"status": {}, "sent": 0, "echoed": 0, "other": 0, "reasons": {}}
    total["delays"] = array("f")
    total["late_ms"] = array("f")
    n = 0
    while loop.time() + plan["seconds"] < plan["end_at"]:
        n += 1
        call_id = plan["id_base"] + index * 1000 + n
        result = await one_relay_call(client, plan, call_id, plan["seconds"])
        status = result["status"]
        total["status"][status] = total["status"].get(status, 0) + 1
        if result["reason"]:
            total["reasons"][result["reason"]] = total["reasons"].get(result["reason"], 0) + 1
        for key in ("sent", "echoed", "other"):
            total[key] += result[key]
        total["delays"].extend(result["delays"])
        total["late_ms"].extend(result["late_ms"])
        if status != "completed":
            await asyncio.sleep(1.0)  # a refused caller redials after a while
    return total


async def one_relay_call(
    client: httpx.AsyncClient | None, plan: dict[str, Any], call_id: int, seconds: float
) -> dict[str, Any]:
    """Place one relay call now; its result as a dict."""
    call = RelayCall(call_id, round(seconds / FRAME_S))
    result: dict[str, Any] = {"status": "completed", "reason": "", "deflate": None}
    try:
        dialed, _ = await dial(client, plan, plan.get("to_number", ""))
        result["deflate"] = dialed.deflate
        phone = Phone(dialed)
        start, end = await call.run(phone)
        result.update(minutes=(end - start) / 60, marks=phone.marks_echoed, clears=phone.clears)
    except CallRefusedError as exc:
        result.update(status="refused", reason=str(exc))
    except (CallFailedError, ConnectionClosed, OSError, TimeoutError) as exc:
        result.update(status="failed", reason=str(exc) or type(exc).__name__)
    except Exception as exc:  # a bench bug must not lose the other calls' figures
        result.update(status="failed", reason=f"loadgen error: {exc!r}"[:160])
    result.update(
        sent=call.sent,
        echoed=call.echoed,
        other=call.other,
        delays=call.delays_ms(),
        late_ms=array("f", (1000.0 * x for x in call.late_s)),
    )
    if result["status"] == "completed" and call.sent < call.frames:
        result.update(status="failed", reason="stream ended early")
    return result


async def run_plan(plan: dict[str, Any]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        kind = plan.get("kind", "relay")
        if kind == "relay":
            calls = [relay_call(client, plan, i) for i in range(len(plan["starts"]))]
        elif kind == "soak":
            calls = [soak_slot(client, plan, i) for i in range(len(plan["starts"]))]
        else:
            from _load_speech import speaking_call  # local mode

            calls = [speaking_call(client, plan, i) for i in range(len(plan["starts"]))]
        return list(await asyncio.gather(*calls))


def client_main(plan: dict[str, Any], results: Any) -> None:
    """A client process: run ``plan``'s calls, put ``(results, cpu_s)`` on the queue."""
    os.nice(0)
    t = time.monotonic()
    try:
        calls = asyncio.run(run_plan(plan))
    except BaseException as exc:
        calls = [
            {
                "status": "failed",
                "reason": f"client process: {exc!r}"[:200],
                "sent": 0,
                "echoed": 0,
                "other": 0,
                "delays": [],
                "late_ms": [],
                "deflate": None,
            }
        ]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put(
        {
            "calls": calls,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "wall_s": time.monotonic() - t,
        }
    )
