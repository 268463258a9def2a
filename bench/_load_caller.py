"""Relay callers for ``bench_load.py``: many calls per client process, echoes matched by content.

Each client process (:func:`client_main`) runs its share of the calls in one
asyncio loop (see :mod:`_load_twilio` for how a call is placed). A relay call
(:class:`RelayCall`) streams 160-byte G.711 mu-law frames every 20 ms on an
absolute schedule (``t0 + k * 20 ms``, never drifting), then waits up to
:data:`ECHO_GRACE_S` for the last echoes and sends ``stop``.

Frames are distinguishable: a marker ``LB`` + the call's id in 8 hex digits +
the frame counter in 8 hex digits (ASCII, so no byte is mu-law's negative
zero 0x7F, which a decode/encode round trip turns into 0xFF), then mu-law
silence. Agent audio is scanned for this call's markers wherever they fall
(a peer that re-chunks audio moves them): a marker is that frame's echo,
received when the message completing it arrives; agent audio without one
(a greeting) is ignored for delay. Echo delay = receive time of the first echo
of frame k - send time of frame k; audio returned = distinct frames echoed /
frames sent. Each frame's send lateness against its schedule is kept, to show
when the load generator itself falls behind.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import time
from array import array
from typing import Any

import httpx
from _load_twilio import (
    FRAME_S,
    SILENCE,
    CallFailedError,
    CallRefusedError,
    Phone,
    closed_reason,
    dial,
    ended_early,
    hang_up,
    stop_task,
)
from websockets.exceptions import ConnectionClosed

MAGIC = b"LB"
MARKER_BYTES = 18  # MAGIC + 8 hex digits of call id + 8 of frame counter
ECHO_GRACE_S = 2.0  # after the last frame, how long echoes may still come before `stop`


def frame_payload(call_id: int, k: int) -> bytes:
    return b"%s%08x%08x" % (MAGIC, call_id, k) + SILENCE[MARKER_BYTES:]


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
        key = b"%s%08x" % (MAGIC, self.call_id)
        tail = b""
        try:
            async for text in phone.dialed.ws:
                now = loop.time()
                payload = phone.heard(json.loads(text), now)
                if payload is None:
                    continue
                audio = tail + payload
                tail = audio[-(MARKER_BYTES - 1) :]
                at = audio.find(key)
                if at < 0:
                    self.other += 1
                while 0 <= at <= len(audio) - MARKER_BYTES:
                    try:
                        k = int(audio[at + len(key) : at + MARKER_BYTES], 16)
                    except ValueError:  # not a marker after all
                        k = self.frames
                    if k < self.frames and math.isnan(self.echo_at[k]):
                        self.echo_at[k] = now
                        self.echoed += 1
                    at = audio.find(key, at + MARKER_BYTES)
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
