"""Local-mode callers for ``bench_load.py``: real lines to the ``local`` agent, answers checked.

A call (see :mod:`_load_caller` for the webhook, the stream and the phone's
playout clock): after the greeting has played, the caller says each line
(G.711 frames on the absolute 20 ms schedule, silence frames in between, as a
phone line sends), waits for the answer to play out, then says the next one.
Measured on the caller's side, per answer (the greeting counts as one):

- response latency: send time of the line's last frame -> first agent frame after it;
- the longest inter-arrival gap between consecutive agent frames of the answer;
- playout underruns: an agent frame arriving after the audio before it has
  finished playing (how many, and the longest wait).

Correct: the call's events (``GET /v1/calls/{session_id}/events``, the dev
API key) show, per line, a ``turn:user`` with the expected intent and a
``turn:agent`` (not the greeting) that starts with that intent's reply.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
from _load_twilio import (
    FRAME_BYTES,
    FRAME_S,
    SILENCE,
    CallFailedError,
    CallRefusedError,
    Phone,
    dial,
    hang_up,
    stop_task,
)
from websockets.exceptions import ConnectionClosed

GREETING_WAIT_S = 10.0
ANSWER_WAIT_S = 20.0
QUIET_S = 0.4  # the answer is over: its audio has played and nothing came for this long


@dataclass
class Segment:
    """Agent audio after one cue (the call's start, or the end of a caller line)."""

    cue_s: float
    arrivals: list[float] = field(default_factory=list)
    underruns: int = 0
    longest_underrun_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        gaps = [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]
        return {
            "latency_ms": (
                None if not self.arrivals else round(1000 * (self.arrivals[0] - self.cue_s), 1)
            ),
            "frames": len(self.arrivals),
            "max_gap_ms": round(1000 * max(gaps), 1) if gaps else None,
            "underruns": self.underruns,
            "longest_underrun_ms": round(1000 * self.longest_underrun_s, 1),
        }


class SpeakingCall:
    def __init__(self, phone: Phone) -> None:
        self.phone = phone
        self.microphone: deque[bytes] = deque()
        self.last_line_frame_s = 0.0
        self.segments: list[Segment] = []
        self.last_arrival_s = 0.0
        self.closed = asyncio.Event()

    async def tick(self) -> None:
        """One frame every 20 ms on an absolute schedule: the line's, or silence."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        k = 0
        while not self.closed.is_set():
            now = loop.time()
            await self.phone.flush_marks(now)
            frame = self.microphone.popleft() if self.microphone else SILENCE
            await self.phone.send_media(frame)
            if frame is not SILENCE and not self.microphone:
                self.last_line_frame_s = loop.time()
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * FRAME_S - loop.time()))

    async def receive(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for text in self.phone.dialed.ws:
                now = loop.time()
                before = self.phone.playout_end
                played = self.phone.heard(json.loads(text), now)
                if played is None or not self.segments:
                    continue
                segment = self.segments[-1]
                if segment.arrivals and now > before:
                    segment.underruns += 1
                    segment.longest_underrun_s = max(segment.longest_underrun_s, now - before)
                segment.arrivals.append(now)
                self.last_arrival_s = now
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def wait_quiet(self, segment: Segment, timeout_s: float) -> None:
        """Until the segment's first audio has come and then played out (or timeout/close)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not self.closed.is_set() and loop.time() < end:
            now = loop.time()
            if (
                segment.arrivals
                and now > self.phone.playout_end + QUIET_S
                and now > self.last_arrival_s + QUIET_S
            ):
                return
            await asyncio.sleep(0.05)

    async def say(self, audio: bytes) -> Segment:
        frames = [
            audio[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\xff")
            for i in range(0, len(audio), FRAME_BYTES)
        ]
        self.last_line_frame_s = 0.0
        self.microphone.extend(frames)
        while self.last_line_frame_s == 0.0 and not self.closed.is_set():
            await asyncio.sleep(FRAME_S)
        segment = Segment(self.last_line_frame_s)
        self.segments.append(segment)
        return segment


async def fetch_events(
    client: httpx.AsyncClient, plan: dict[str, Any], session_id: str
) -> list[dict[str, Any]]:
    url = f"{plan['base_url'].rstrip('/')}/v1/calls/{session_id}/events"
    headers = {"Authorization": f"Bearer {plan['api_key']}"}
    events: list[dict[str, Any]] = []
    for _ in range(50):
        response = await client.get(url, headers=headers)
        if response.status_code == 200:
            events = response.json()["events"]
            if events and events[-1]["type"] == "session.end":
                break
        await asyncio.sleep(0.2)
    return events


def judge(events: list[dict[str, Any]], expected: list[tuple[str, str]]) -> dict[str, Any]:
    """Each line's logged intent and answer against ``expected`` (intent, reply prefix)."""
    greetings: set[str] = set()
    turns: list[list[Any]] = []  # [intent, answer text]
    for event in events:
        payload = event.get("payload", {})
        if event["type"] == "response.start" and payload.get("greeting"):
            greetings.add(payload.get("response_id", ""))
        elif event["type"] == "turn:user":
            turns.append([payload.get("intent"), None])
        elif (
            event["type"] == "turn:agent"
            and payload.get("response_id") not in greetings
            and turns
            and turns[-1][1] is None
        ):
            turns[-1][1] = payload.get("text") or ""
    checks = []
    for i, (intent, prefix) in enumerate(expected):
        got_intent, answer = turns[i] if i < len(turns) else (None, None)
        ok = got_intent == intent and (answer or "").startswith(prefix)
        checks.append({"intent": got_intent, "answer": answer, "ok": ok})
    return {"correct": all(c["ok"] for c in checks), "lines": checks}


async def speaking_call(client: httpx.AsyncClient, plan: dict[str, Any], index: int) -> dict:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, plan["starts"][index] - loop.time()))
    result: dict[str, Any] = {"status": "completed", "reason": "", "correct": False}
    try:
        dialed, _ = await dial(client, plan, plan["to_number"])
    except CallRefusedError as exc:
        return {**result, "status": "refused", "reason": str(exc)}
    except (CallFailedError, OSError, TimeoutError) as exc:
        return {**result, "status": "failed", "reason": str(exc) or type(exc).__name__}
    call = SpeakingCall(Phone(dialed))
    call.segments.append(Segment(loop.time()))  # the greeting
    tasks = [asyncio.ensure_future(call.receive()), asyncio.ensure_future(call.tick())]
    try:
        await call.wait_quiet(call.segments[0], GREETING_WAIT_S)
        for line in plan["lines"]:
            if call.closed.is_set():
                break
            segment = await call.say(line)
            await call.wait_quiet(segment, ANSWER_WAIT_S)
        try:
            async with asyncio.timeout(3.0):  # the agent hangs up after the goodbye
                await call.closed.wait()
            result["ended_by"] = "agent"
        except TimeoutError:
            result["ended_by"] = "caller"
    except ConnectionClosed as exc:
        result.update(status="failed", reason=f"closed: {exc}")
    finally:
        await stop_task(tasks[1])
        if not call.closed.is_set():
            await stop_task(tasks[0])
            await hang_up(call.phone)
        await stop_task(tasks[0])
    result["segments"] = [s.summary() for s in call.segments]
    if dialed.session_id and plan.get("api_key"):
        events = await fetch_events(client, plan, dialed.session_id)
        result.update(judge(events, [tuple(e) for e in plan["expected"]]))
        result["events"] = len(events)
        result["event_types"] = [e["type"] for e in events if not e["type"].startswith("audio")]
    if result["status"] == "completed" and not result["correct"]:
        result["reason"] = "wrong or missing answer"
    return result
