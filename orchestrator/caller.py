"""``switchboard call``: a caller you can run, standing in for Twilio and a phone.

It behaves as Twilio does for an inbound call: signs and POSTs the voice
webhook (``X-Twilio-Signature``), follows the TwiML to the ``<Stream>``,
sends ``connected`` and ``start`` with the ``<Parameter>`` values, then
streams the caller's lines as 20 ms G.711 frames in real time (silence in
between, as a phone line does), plays what the agent sends on a playout
clock, answers each ``mark`` once the audio before it has played, obeys
``clear``, and sends ``stop`` at the end unless the agent hung up first.

Measured on the caller's side: ``greeting_latency_ms`` (``start`` sent ->
first agent audio received) and, per turn, ``response_latency_ms`` (the end
of the caller's audio -> the first agent audio after it).
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import trio
import trio_websocket
from twilio.request_validator import RequestValidator

from switchboard.actors.local import tts
from switchboard.actors.local.wavfile import read_wav, write_wav
from switchboard.codecs import Resampler, ulaw_decode, ulaw_encode
from switchboard.codecs import twilio_media as wire

from .errors import SwitchboardError

FRAME = wire.FRAME_BYTES
FRAME_S = FRAME / wire.SAMPLE_RATE
SILENCE = b"\xff" * FRAME  # mu-law zero
# After each line when not in real time: lets the VAD close the turn.
TRAILING_SILENCE_S = 1.2
# After the last answer, before the caller hangs up: the agent may hang up first.
HANG_UP_GRACE_S = 1.5


class CallError(SwitchboardError):
    """The call could not be placed or went wrong; the message says why."""


@dataclass(frozen=True)
class CallerLine:
    """One thing the caller says: ``audio`` is G.711 mu-law at 8 kHz."""

    label: str
    audio: bytes

    @classmethod
    def say(cls, text: str) -> CallerLine:
        return cls(text, tts.synthesize_ulaw(text))

    @classmethod
    def wav(cls, path: Path) -> CallerLine:
        rate, pcm = read_wav(path)
        if rate != wire.SAMPLE_RATE:
            rs = Resampler(rate, wire.SAMPLE_RATE)
            pcm = np.concatenate([rs.process(pcm), rs.flush()])
        return cls(str(path), ulaw_encode(pcm))


@dataclass
class Turn:
    said: str
    caller: str | None = None
    agent: str | None = None
    response_latency_ms: float | None = None


@dataclass
class CallSummary:
    call_sid: str
    session_id: str | None
    greeting_latency_ms: float | None
    turns: list[Turn] = field(default_factory=list)
    events_logged: int | None = None
    ended_by: str = "caller"
    greeting: str | None = None
    events_unread: str | None = None
    """Why the call's events (and so its transcripts) could not be read, if they could not."""
    failovers: list[str] = field(default_factory=list)
    """What the caller lived through of the providers failing, one line each, in order
    (:func:`failover_lines`)."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Phone:
    """The phone end of a Media Stream: a microphone and a loudspeaker on a clock."""

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        encoder: wire.InboundEncoder,
        *,
        realtime: bool,
    ) -> None:
        self.ws = ws
        self.encoder = encoder
        self.realtime = realtime
        self.playout_end_s = 0.0
        self.heard: list[tuple[float, bytes]] = []
        self.received: list[tuple[float, bytes]] = []  # every agent frame, as it arrived
        self.sent: list[tuple[float, bytes]] = []  # every caller frame, as it left
        self.media_times: list[float] = []
        self.response_ends: list[float] = []  # playout time of each response's closing mark
        self.closed = trio.Event()
        self._changed = trio.Event()
        self._microphone: list[bytes] = []
        self._line_sent = trio.Event()

    async def listen(self, nursery: trio.Nursery) -> None:
        """Receive until the server closes the stream."""
        try:
            while True:
                message = wire.parse_outbound(await self.ws.get_message())
                now = trio.current_time()
                if isinstance(message, wire.OutboundMedia):
                    start = max(self.playout_end_s, now)
                    self.playout_end_s = start + len(message.payload) / wire.SAMPLE_RATE
                    self.heard.append((start, message.payload))
                    self.received.append((now, message.payload))
                    self.media_times.append(now)
                elif isinstance(message, wire.OutboundMark):
                    at = max(self.playout_end_s, now) if self.realtime else now
                    if message.name.startswith("response:"):
                        self.response_ends.append(at)
                    nursery.start_soon(self._echo_mark, message.name, at)
                else:  # clear: drop what has not been played
                    self.heard = [(t, p) for t, p in self.heard if t <= now]
                    self.playout_end_s = now
                self._notify()
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._notify()

    async def _echo_mark(self, name: str, at: float) -> None:
        await trio.sleep_until(at)
        await self._send(self.encoder.mark(name))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _send(self, text: str) -> bool:
        try:
            await self.ws.send_message(text)
        except trio_websocket.ConnectionClosed:
            return False
        return True

    async def _send_audio(self, frame: bytes) -> None:
        sent_s = trio.current_time()
        if await self._send(self.encoder.media(frame)):
            self.sent.append((sent_s, frame))

    async def microphone(self) -> None:
        """Real time: one frame every 20 ms, the queued line's or silence."""
        next_s = trio.current_time()
        while not self.closed.is_set():
            frame = self._microphone.pop(0) if self._microphone else SILENCE
            await self._send_audio(frame)
            if not self._microphone:
                self._line_sent.set()
            next_s += FRAME_S
            await trio.sleep_until(next_s)

    async def speak(self, audio: bytes) -> float:
        """Send one line; return when its last frame has left (trio time)."""
        frames = [audio[i : i + FRAME].ljust(FRAME, b"\xff") for i in range(0, len(audio), FRAME)]
        if self.realtime:
            self._line_sent = trio.Event()
            self._microphone.extend(frames)
            await self._line_sent.wait()
            return trio.current_time()
        for frame in frames:
            await self._send_audio(frame)
        end = trio.current_time()
        for _ in range(int(TRAILING_SILENCE_S / FRAME_S)):
            await self._send_audio(SILENCE)
        return end

    async def wait_for(self, predicate: Any, timeout_s: float) -> bool:
        with trio.move_on_after(timeout_s):
            while not predicate():
                if self.closed.is_set():
                    return bool(predicate())
                await self._changed.wait()
            return True
        return False

    async def wait_response(self, since_s: float, timeout_s: float) -> float | None:
        """Wait for the first agent audio after ``since_s`` and for that response to be heard."""
        got = await self.wait_for(lambda: any(t >= since_s for t in self.media_times), timeout_s)
        if not got:
            return None
        first = next(t for t in self.media_times if t >= since_s)
        await self.wait_for(lambda: any(t >= first for t in self.response_ends), timeout_s)
        ends = [t for t in self.response_ends if t >= first]
        if ends and self.realtime:
            with trio.move_on_at(ends[0] + 0.05):
                await self.closed.wait()
        return first

    def recording(self, t0: float) -> np.ndarray:
        """What the caller heard, on the call's timeline, as PCM16 at 8 kHz."""
        if not self.heard:
            return np.zeros(0, dtype=np.int16)
        end = max(t + len(p) / wire.SAMPLE_RATE for t, p in self.heard)
        out = np.zeros(int((end - t0) * wire.SAMPLE_RATE) + FRAME, dtype=np.int16)
        for t, payload in self.heard:
            i = max(0, round((t - t0) * wire.SAMPLE_RATE))
            pcm = ulaw_decode(payload)
            out[i : i + len(pcm)] = pcm[: len(out) - i]
        return out


def twilio_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


async def post_webhook(
    client: httpx.AsyncClient, base_url: str, auth_token: str, params: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """POST the signed voice webhook; return the ``<Stream>`` URL and its parameters."""
    url = base_url.rstrip("/") + "/twilio/incoming"
    signature = RequestValidator(auth_token).compute_signature(url, params)
    response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
    if response.status_code == 403:
        raise CallError("the server refused the webhook signature (check the Twilio auth token)")
    response.raise_for_status()
    root = ET.fromstring(response.text)
    stream = root.find("./Connect/Stream")
    if stream is None:
        said = " ".join(e.text or "" for e in root.iter("Say"))
        raise CallError(f"the server did not connect a stream{': ' + said if said else ''}")
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), parameters


async def fetch_events(
    client: httpx.AsyncClient, base_url: str, api_key: str, session_id: str, wait_s: float = 10.0
) -> list[dict[str, Any]]:
    """The call's logged events, waiting (up to ``wait_s``) for ``session.end`` to land.

    Raises:
        CallError: the server refused the API key (401), or never answered 200 for
            the session (another tenant's key, or a server with another data folder).
    """
    events: list[dict[str, Any]] = []
    status = None
    with trio.move_on_after(wait_s):
        while True:
            status, events = await _events_now(client, base_url, api_key, session_id)
            if events and events[-1]["type"] == "session.end":
                break
            await trio.sleep(0.2)
    if status != 200:
        raise CallError(
            f"the events endpoint answered HTTP {status} for session {session_id} "
            "(is the API key this server's tenant's?)"
        )
    return events


async def _events_now(
    client: httpx.AsyncClient, base_url: str, api_key: str, session_id: str
) -> tuple[int, list[dict[str, Any]]]:
    """One read of the call's events: the HTTP status and the events logged so far.

    Raises:
        CallError: the server refused the API key (401).
    """
    url = f"{base_url.rstrip('/')}/v1/calls/{session_id}/events"
    response = await client.get(url, headers={"Authorization": f"Bearer {api_key}"})
    if response.status_code == 401:
        raise CallError("the server refused the API key for the events endpoint")
    events = response.json()["events"] if response.status_code == 200 else []
    return response.status_code, events


async def _turn_texts(
    client: httpx.AsyncClient, base_url: str, api_key: str, session_id: str, turns: int
) -> tuple[str | None, list[Turn]]:
    """The greeting and the call's turns as logged so far, once the last of ``turns``
    turns (the greeting, for 0) has its agent text, or after :data:`LIVE_TEXT_WAIT_S`
    (the event may still be on its way)."""
    logged = [Turn("") for _ in range(turns)]
    greeting = None
    with trio.move_on_after(LIVE_TEXT_WAIT_S):
        while True:
            _, events = await _events_now(client, base_url, api_key, session_id)
            greeting = match_turns(logged, events)
            if (logged[-1].agent if logged else greeting) is not None:
                break
            await trio.sleep(0.1)
    return greeting, logged


def match_turns(turns: list[Turn], events: list[dict[str, Any]]) -> str | None:
    """Fill each turn's logged caller transcript and agent answer; return the greeting text."""
    greeting = None
    greetings: set[str] = set()  # response ids the provider marked as the greeting
    answers: list[tuple[str | None, str | None]] = []
    for event in events:
        payload = event.get("payload", {})
        if event["type"] == "response.start" and payload.get("greeting"):
            greetings.add(payload.get("response_id", ""))
        elif event["type"] == "turn:user":
            answers.append((payload.get("text"), None))
        elif event["type"] == "turn:agent":
            if payload.get("response_id") in greetings:
                greeting = payload.get("text")
            elif answers and answers[-1][1] is None:
                answers[-1] = (answers[-1][0], payload.get("text"))
    for turn, (caller, agent) in zip(turns, answers, strict=False):
        turn.caller, turn.agent = caller, agent
    return greeting


def failover_lines(events: list[dict[str, Any]]) -> list[str]:
    """The call's provider failures and what the runtime did, as lines for a person:
    ``"turn 1: openai-realtime failed (stall: ...)"``, ``"turn 1: switched from
    openai-realtime to gemini-live; the caller heard 2350 ms of silence"``, the
    reconnects, and the give-up (apology, then a transfer or the end)."""
    lines: list[str] = []
    for event in events:
        p = event.get("payload", {})
        kind = event["type"]
        if kind == "provider.failed":
            lines.append(
                f"turn {p.get('turn')}: {p.get('provider')} failed "
                f"({p.get('kind')}: {p.get('detail')})"
            )
        elif kind == "failover.switch":
            lines.append(
                f"turn {p.get('turn')}: switched from {p.get('from')} to {p.get('to')}; "
                f"the caller heard {p.get('gap_ms')} ms of silence"
            )
        elif kind == "failover.reconnect":
            lines.append(f"turn {p.get('turn')}: reconnected to {p.get('provider')}")
        elif kind == "failover.exhausted":
            then = f"a transfer to {p['transfer_to']}" if p.get("transfer_to") else "the end"
            lines.append(f"turn {p.get('turn')}: no provider left: the apology, then {then}")
    return lines


LIVE_TEXT_WAIT_S = 2.0
"""How long a live turn line waits for the turn's logged transcript."""


@dataclass
class _Live:
    """The lines ``place_call`` reports as the call goes (see its ``progress``)."""

    client: httpx.AsyncClient
    base_url: str
    api_key: str | None
    summary: CallSummary
    progress: Callable[[str], None] | None

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    async def _logged(self) -> tuple[str | None, list[Turn]] | None:
        """What the events say so far (None: no API key, or they could not be read; the
        summary at the end says why)."""
        if not self.api_key or not self.summary.session_id:
            return None
        turns = len(self.summary.turns)
        try:
            args = (self.client, self.base_url, self.api_key, self.summary.session_id, turns)
            return await _turn_texts(*args)
        except (CallError, httpx.HTTPError, ValueError):
            return None

    async def greeting(self) -> None:
        if self.progress is None:
            return
        logged = await self._logged()
        text = f": {logged[0]!r}" if logged is not None else ""
        self.say(f"  greeting after {self.summary.greeting_latency_ms} ms{text}")

    async def turn(self) -> None:
        if self.progress is None:
            return
        i, turn = len(self.summary.turns), self.summary.turns[-1]
        self.say(f"  turn {i}: said {turn.said!r}")
        logged = await self._logged()
        if logged is not None:
            self.say(f"          heard as {logged[1][-1].caller!r}")
        answer = f": {logged[1][-1].agent!r}" if logged is not None else ""
        self.say(f"          agent ({turn.response_latency_ms} ms){answer}")


async def place_call(
    base_url: str,
    lines: list[CallerLine],
    *,
    to_number: str,
    from_number: str = "+15005550001",
    from_state: str | None = "CA",
    auth_token: str,
    api_key: str | None,
    realtime: bool = True,
    save_audio: Path | None = None,
    response_timeout_s: float = 20.0,
    inject: Sequence[str] = (),
    phones: list[Phone] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CallSummary:
    """Place one call as Twilio would and report what the caller experienced.

    ``progress``: called with a line for a person as the call goes (the call's ids,
    the greeting, each turn: what was said, what the runtime heard, the agent's answer
    and its latency; the transcripts need ``api_key``).
    ``inject``: raw messages sent right after ``start`` (for tests of bad frames).
    ``phones``: if given, the call's :class:`Phone` is appended (what it heard, when).
    ``from_state``: the webhook's ``FromState`` (the caller's state; None: not sent).
    """
    call_sid, account_sid = twilio_sid("CA"), twilio_sid("AC")
    params = {
        "CallSid": call_sid,
        "AccountSid": account_sid,
        "From": from_number,
        "To": to_number,
        "Direction": "inbound",
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
    }
    if from_state is not None:
        params["FromState"] = from_state
    async with httpx.AsyncClient(timeout=10.0) as client:
        stream_url, parameters = await post_webhook(client, base_url, auth_token, params)
        summary = CallSummary(call_sid, parameters.get("session_id"), None)
        live = _Live(client, base_url, api_key, summary, progress)
        live.say(f"call {call_sid} (session {summary.session_id})")
        encoder = wire.InboundEncoder(twilio_sid("MZ"), call_sid, account_sid)
        async with (
            trio_websocket.open_websocket_url(stream_url) as ws,
            trio.open_nursery() as nursery,
        ):
            phone = Phone(ws, encoder, realtime=realtime)
            if phones is not None:
                phones.append(phone)
            nursery.start_soon(phone.listen, nursery)
            await ws.send_message(encoder.connected())
            t_start = trio.current_time()
            await ws.send_message(encoder.start(parameters))
            for raw in inject:
                await ws.send_message(raw)
            if realtime:
                nursery.start_soon(phone.microphone)
            first = await phone.wait_response(t_start, response_timeout_s)
            summary.greeting_latency_ms = (
                None if first is None else round((first - t_start) * 1000, 1)
            )
            await live.greeting()
            for line in lines:
                if phone.closed.is_set():
                    break
                turn = Turn(line.label)
                summary.turns.append(turn)
                spoke_s = await phone.speak(line.audio)
                first = await phone.wait_response(spoke_s, response_timeout_s)
                if first is not None:
                    turn.response_latency_ms = round((first - spoke_s) * 1000, 1)
                await live.turn()
            with trio.move_on_after(HANG_UP_GRACE_S):  # the agent may be hanging up
                await phone.closed.wait()
            if phone.closed.is_set():
                summary.ended_by = "agent"
            else:
                await ws.send_message(encoder.stop())
                await ws.aclose()
            nursery.cancel_scope.cancel()
        if save_audio is not None:
            write_wav(save_audio, wire.SAMPLE_RATE, phone.recording(t_start))
        if not api_key:
            summary.events_unread = (
                "no API key (pass --api-key or set SWITCHBOARD_API_KEY): "
                "the logged transcripts were not read"
            )
        elif summary.session_id:
            try:
                events = await fetch_events(client, base_url, api_key, summary.session_id)
            except CallError as exc:
                summary.events_unread = str(exc)
            else:
                summary.events_logged = len(events)
                summary.greeting = match_turns(summary.turns, events)
                summary.failovers = failover_lines(events)
    return summary
