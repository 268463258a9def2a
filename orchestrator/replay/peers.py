"""The caller's side of a replayed call: each door's peer, played from the recording.

A peer is the socket the door's real transport reads and writes
(:class:`~switchboard.actors.sockets.MessageSocket`). It sends the caller's
recorded frames at their recorded offsets (in the door's wire format: Twilio
``media``, the browser's ``audio``, the Realtime API's
``input_audio_buffer.append``), the caller's other actions at the times of the
events they caused (DTMF, typed text, ``response.create``/``cancel``), and
hangs up when and as the recorded caller did. A Twilio peer also plays what
Twilio's player does with the agent's side: a mark is echoed once the audio
sent before it has played (at the recorded time of its ``playback.marked``
event when the call logged one), a ``clear`` drops what is queued and echoes
every pending mark at once. Outbound messages are otherwise only counted.
"""

from __future__ import annotations

import heapq
import json
from base64 import b64encode
from collections.abc import Callable
from itertools import count

import trio

from switchboard.codecs import twilio_media as wire

from .recorded_call import RecordedCall

__all__ = ["ReplayPeer", "make_peer"]

_ACCOUNT = "AC00000000000000000000000000000000"


class ReplayPeer:
    """A door's peer on the call's clock (see the module docstring).

    ``t0`` is the call's start (``trio.current_time()`` seconds); ``encode_audio`` turns
    one recorded caller frame into the door's message; ``encode_action`` an action
    (``dtmf``, ``text``, ``response.create``, ``response.cancel``) into one, or None
    when the door has no such message.
    """

    def __init__(
        self,
        call: RecordedCall,
        t0: float,
        encode_audio: Callable[[bytes], str],
        encode_action: Callable[[str, dict[str, object]], str | None],
        stop_message: str | None,
    ) -> None:
        self._t0 = t0
        order = count()
        self._encode_audio = encode_audio
        # (t_ms, order, message): bytes are a caller frame (encoded when due), None the hang-up
        queue: list[tuple[float, int, str | bytes | None]] = [
            (t_ms, next(order), data) for t_ms, data in call.caller_audio
        ]
        for t_ms, action, args in call.caller_actions:
            message = encode_action(action, args)
            if message is not None:
                queue.append((t_ms, next(order), message))
        if call.hang_up is not None:
            t_ms, how = call.hang_up
            queue.append((t_ms, next(order), stop_message if how == "stop" else None))
        queue.sort(key=lambda item: (item[0], item[1]))
        self._script = queue
        self._next = 0
        self._order = order
        self._echoes: list[tuple[float, int, str]] = []  # (due s, order, message)
        self._wake: trio.CancelScope | None = None
        self.closed: tuple[int, str] | None = None
        self.sent = 0

    async def receive(self) -> str | bytes | None:
        while self.closed is None:
            script_due = (
                self._t0 + self._script[self._next][0] / 1000.0
                if self._next < len(self._script)
                else None
            )
            echo_due = self._echoes[0][0] if self._echoes else None
            if echo_due is not None and (script_due is None or echo_due <= script_due):
                if echo_due <= trio.current_time():
                    return heapq.heappop(self._echoes)[2]
                due = echo_due
            elif script_due is not None:
                if script_due <= trio.current_time():
                    message = self._script[self._next][2]
                    self._next += 1
                    if message is None:  # the caller closed the connection
                        self.closed = (1000, "")
                        return None
                    if isinstance(message, bytes):
                        return self._encode_audio(message)
                    return message
                due = script_due
            else:
                due = float("inf")
            with trio.CancelScope(deadline=due) as self._wake:
                await trio.sleep_forever()
            self._wake = None
        return None

    def echo_at(self, due_s: float, message: str) -> None:
        """Deliver ``message`` to the transport at ``due_s`` (trio time)."""
        heapq.heappush(self._echoes, (due_s, next(self._order), message))
        if self._wake is not None and due_s < self._wake.deadline:
            self._wake.deadline = due_s

    async def send(self, message: str) -> None:
        self.sent += 1
        await trio.lowlevel.checkpoint()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed is None:
            self.closed = (code, reason)
        if self._wake is not None:
            self._wake.cancel()


class TwilioPeer(ReplayPeer):
    """Twilio's side of a Media Stream: the caller's frames, and the player's marks."""

    def __init__(self, call: RecordedCall, t0: float) -> None:
        encoder = wire.InboundEncoder(call.stream_sid or "MZ0", call.call_sid or "CA0", _ACCOUNT)
        self._encoder = encoder

        def action(name: str, args: dict[str, object]) -> str | None:
            return encoder.dtmf(str(args["digit"])) if name == "dtmf" else None

        super().__init__(call, t0, encoder.media, action, encoder.stop())
        self._recorded_echoes = call.mark_echoes
        self._playout_end = 0.0

    async def send(self, message: str) -> None:
        self.sent += 1
        out = wire.parse_outbound(message)
        now = trio.current_time()
        if isinstance(out, wire.OutboundMedia):
            self._playout_end = max(self._playout_end, now) + len(out.payload) / 8000
        elif isinstance(out, wire.OutboundMark):
            recorded = self._recorded_echoes.get(out.name)
            if recorded is not None:
                due = max(now, self._t0 + recorded / 1000.0)
            else:
                due = max(now, self._playout_end)
            self.echo_at(due, self._encoder.mark(out.name))
        elif isinstance(out, wire.Clear):
            # Twilio drops the buffered audio and echoes every pending mark at once.
            self._playout_end = now
            self._echoes = [(min(due, now), order, m) for due, order, m in self._echoes]
            heapq.heapify(self._echoes)
            if self._wake is not None:
                self._wake.deadline = min(self._wake.deadline, now)
        await trio.lowlevel.checkpoint()


def _json(message: dict[str, object]) -> str:
    return json.dumps(message, separators=(",", ":"))


def browser_peer(call: RecordedCall, t0: float) -> ReplayPeer:
    """The practice page's side: ``audio`` frames and typed ``text``; it hangs up by
    closing the WebSocket."""

    def audio(data: bytes) -> str:
        return _json({"event": "audio", "payload": b64encode(data).decode()})

    def action(name: str, args: dict[str, object]) -> str | None:
        return _json({"event": "text", "text": args["text"]}) if name == "text" else None

    return ReplayPeer(call, t0, audio, action, None)


def realtime_peer(call: RecordedCall, t0: float) -> ReplayPeer:
    """An OpenAI Realtime client's side: ``input_audio_buffer.append`` and
    ``response.create``/``response.cancel``; it hangs up by closing the WebSocket."""

    def audio(data: bytes) -> str:
        return _json({"type": "input_audio_buffer.append", "audio": b64encode(data).decode()})

    def action(name: str, args: dict[str, object]) -> str | None:
        return _json({"type": name}) if name.startswith("response.") else None

    return ReplayPeer(call, t0, audio, action, None)


def make_peer(call: RecordedCall, t0: float) -> ReplayPeer:
    """The peer for ``call``'s door."""
    if call.door == "twilio":
        return TwilioPeer(call, t0)
    if call.door == "browser":
        return browser_peer(call, t0)
    return realtime_peer(call, t0)
