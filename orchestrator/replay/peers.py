"""The caller's side of a replayed call: each door's peer, played from the recording.

A peer is the socket the door's real transport reads and writes
(:class:`~switchboard.actors.sockets.MessageSocket`). It sends the caller's
recorded frames at their recorded offsets, in the door's wire format (Twilio
``media``, the browser's ``audio``, the Realtime API's
``input_audio_buffer.append``). It sends the caller's other actions at the
times of the events they caused (DTMF, typed text, a Realtime client's
``session.update``, ``conversation.item.create`` and ``response.create``/``cancel``),
and hangs up when and
as the recorded caller did. Outbound messages are otherwise only counted.

Caller frames may be sent up to ``audio_ahead_ms`` before their time (never
past another of the caller's messages), consecutive frames joined into one
message of up to ``audio_join_ms``. While every provider instance is a
recording, caller audio changes no event, and a step of the virtual clock and a
parse per 20 ms frame would be most of a replay's time.

A Twilio peer also plays what Twilio's player does with the agent's side. A
mark is echoed once the audio sent before it has played, or at the recorded
time of its ``playback.marked`` event when the call logged one. A ``clear``
drops what is queued and echoes every pending mark at once. The position marks
the transport sends every 100 ms of agent audio (``audio:<n>``) only matter at
a barge-in, where they say how much the caller heard. Each is echoed with the
next message the peer sends once it is due, and at the latest just before each
barge-in the recording holds (:data:`EXACT_WINDOW_S`), rather than at a clock
step of its own.
"""

from __future__ import annotations

import bisect
import heapq
import json
from base64 import b64encode
from collections.abc import Callable
from itertools import count

import trio

from switchboard.actors.twilio_transport import AUDIO_MARK
from switchboard.codecs import twilio_media as wire

from .recorded_call import RecordedCall

__all__ = ["ReplayPeer", "make_peer"]

_ACCOUNT = "AC00000000000000000000000000000000"

EXACT_WINDOW_S = 0.5
"""Around each barge-in the recording holds, position marks due within this long of it
are echoed at their own time, and those due before the window at its start. On the wall
clock the recorded clear lags its cause (the provider's ``speech_started``) by the
call's processing time, up to the comparison's tolerance on a loaded machine; the
replayed clear comes at the cause's instant, so a flush keyed to the recorded clear
alone came after it and the transport heard less than the caller did."""


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
        audio_ahead_ms: float = 0.0,
        audio_join_ms: float = 0.0,
    ) -> None:
        self._t0 = t0
        self._ahead_s = audio_ahead_ms / 1000.0
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
        self._script = _joined(queue, audio_join_ms) if audio_join_ms > 0 else queue
        self._next = 0
        self._order = order
        self._echoes: list[tuple[float, int, str]] = []  # (due s, order, message)
        self._lazy: list[tuple[float, int, str]] = []  # echoes only observed at a clear
        self._clears = sorted(t0 + t_ms / 1000.0 for t_ms in call.clears)
        self._flushes = [t - EXACT_WINDOW_S for t in self._clears]
        self._wake: trio.CancelScope | None = None
        self.closed: tuple[int, str] | None = None
        self.sent = 0

    async def receive(self) -> str | bytes | None:
        while self.closed is None:
            if self._lazy and self._lazy[0][0] <= trio.current_time():
                return heapq.heappop(self._lazy)[2]
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
                now = trio.current_time()
                early = self._ahead_s if isinstance(self._script[self._next][2], bytes) else 0.0
                if script_due <= now + early:
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
            due = min(due, self._next_flush())
            with trio.CancelScope(deadline=due) as self._wake:
                await trio.sleep_forever()
            self._wake = None
        return None

    def _next_flush(self) -> float:
        """When the lazy echoes due by then must be in: just before the next recorded clear
        (inf when none is pending)."""
        if not self._lazy:
            return float("inf")
        now = trio.current_time()
        while self._flushes and self._flushes[0] < now:
            self._flushes.pop(0)
        if self._flushes and self._lazy[0][0] <= self._flushes[0]:
            return self._flushes[0]
        return float("inf")

    def echo_lazily(self, due_s: float, message: str) -> None:
        """Deliver ``message`` at ``due_s`` or later: with the next message the peer sends
        anyway, and at the latest when the window of the next recorded clear opens; at
        ``due_s`` exactly when that is within a recorded clear's window
        (:data:`EXACT_WINDOW_S`)."""
        near = bisect.bisect_left(self._clears, due_s - EXACT_WINDOW_S)
        if near < len(self._clears) and self._clears[near] <= due_s + EXACT_WINDOW_S:
            self.echo_at(due_s, message)
            return
        heapq.heappush(self._lazy, (due_s, next(self._order), message))

    def echo_at(self, due_s: float, message: str) -> None:
        """Deliver ``message`` to the transport at ``due_s`` (trio time)."""
        heapq.heappush(self._echoes, (due_s, next(self._order), message))
        if self._wake is not None and due_s < self._wake.deadline:
            self._wake.deadline = due_s

    async def send(self, message: str) -> None:
        # Never blocks, so no checkpoint: the transport's sending loop has its own, and a
        # step of the virtual clock per frame is what a replay cannot afford.
        self.sent += 1

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed is None:
            self.closed = (code, reason)
        if self._wake is not None:
            self._wake.cancel()


def _joined(
    queue: list[tuple[float, int, str | bytes | None]], join_ms: float
) -> list[tuple[float, int, str | bytes | None]]:
    """``queue`` with each run of caller frames within ``join_ms`` of its first frame (and
    no other message between) as one frame at the first one's time."""
    out: list[tuple[float, int, str | bytes | None]] = []
    for item in queue:
        last = out[-1] if out else None
        if (
            last is not None
            and isinstance(item[2], bytes)
            and isinstance(last[2], bytes)
            and item[0] - last[0] < join_ms
        ):
            out[-1] = (last[0], last[1], last[2] + item[2])
        else:
            out.append(item)
    return out


class TwilioPeer(ReplayPeer):
    """Twilio's side of a Media Stream: the caller's frames, and the player's marks."""

    def __init__(
        self, call: RecordedCall, t0: float, audio_ahead_ms: float = 0.0, audio_join_ms: float = 0.0
    ) -> None:
        encoder = wire.InboundEncoder(call.stream_sid or "MZ0", call.call_sid or "CA0", _ACCOUNT)
        self._encoder = encoder

        def action(name: str, args: dict[str, object]) -> str | None:
            return encoder.dtmf(str(args["digit"])) if name == "dtmf" else None

        super().__init__(
            call, t0, encoder.media, action, encoder.stop(), audio_ahead_ms, audio_join_ms
        )
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
            if out.name.startswith(AUDIO_MARK):
                self.echo_lazily(due, self._encoder.mark(out.name))
            else:
                self.echo_at(due, self._encoder.mark(out.name))
        elif isinstance(out, wire.Clear):
            # Twilio drops the buffered audio and echoes every pending mark at once.
            self._playout_end = now
            self._echoes = [(min(due, now), order, m) for due, order, m in self._echoes]
            heapq.heapify(self._echoes)
            self._lazy = [(min(due, now), order, m) for due, order, m in self._lazy]
            heapq.heapify(self._lazy)
            if self._wake is not None:
                self._wake.deadline = min(self._wake.deadline, now)


def _json(message: dict[str, object]) -> str:
    return json.dumps(message, separators=(",", ":"))


def browser_peer(
    call: RecordedCall, t0: float, audio_ahead_ms: float = 0.0, audio_join_ms: float = 0.0
) -> ReplayPeer:
    """The practice page's side: ``audio`` frames and typed ``text``; it hangs up by
    closing the WebSocket."""

    def audio(data: bytes) -> str:
        return _json({"event": "audio", "payload": b64encode(data).decode()})

    def action(name: str, args: dict[str, object]) -> str | None:
        return _json({"event": "text", "text": args["text"]}) if name == "text" else None

    return ReplayPeer(call, t0, audio, action, None, audio_ahead_ms, audio_join_ms)


def realtime_peer(
    call: RecordedCall, t0: float, audio_ahead_ms: float = 0.0, audio_join_ms: float = 0.0
) -> ReplayPeer:
    """An OpenAI Realtime client's side: ``input_audio_buffer.append``, ``session.update``,
    ``conversation.item.create`` and ``response.create``/``response.cancel``; it hangs up
    by closing the WebSocket."""

    def audio(data: bytes) -> str:
        return _json({"type": "input_audio_buffer.append", "audio": b64encode(data).decode()})

    def action(name: str, args: dict[str, object]) -> str | None:
        if name == "session.update":
            return _session_update(args)
        if name == "conversation.item.create":
            return _item_create(args)
        return _json({"type": name}) if name.startswith("response.") else None

    return ReplayPeer(call, t0, audio, action, None, audio_ahead_ms, audio_join_ms)


def _item_create(args: dict[str, object]) -> str | None:
    """The client's ``conversation.item.create`` as its ``realtime.item.create`` event tells
    it: the item's id, kind and role, and its text (typed text as ``input_text``, so it is
    the caller's turn again); a function call or output with placeholders for what the
    event does not keep. None for an event of a release that did not log the role."""
    item_id, text = str(args.get("item_id") or ""), str(args.get("text") or "")
    kind, role = args.get("kind"), args.get("role")
    item: dict[str, object]
    if kind == "MessageItem" and role in ("user", "assistant", "system"):
        if role == "assistant":
            part: dict[str, object] = {"type": "output_text", "text": text}
        elif args.get("typed") or role == "system":
            part = {"type": "input_text", "text": text}
        else:  # a user message of audio: only its transcript was logged
            part = {"type": "input_audio", "transcript": text}
        item = {"type": "message", "role": role, "content": [part] if text else []}
    elif kind == "FunctionCallItem":
        item = {"type": "function_call", "call_id": "replayed", "name": "replayed"}
    elif kind == "FunctionCallOutputItem":
        item = {"type": "function_call_output", "call_id": "replayed", "output": ""}
    else:
        return None
    return _json({"type": "conversation.item.create", "item": {**item, "id": item_id}})


_IGNORED_PLACEHOLDERS: dict[str, object] = {
    "instructions": "",
    "tools": [],
    "voice": "alloy",
    "turn_detection": {"type": "server_vad"},
}
"""A value for each ``session.update`` field the endpoint ignores (the event names them,
not what the client sent)."""


def _session_update(args: dict[str, object]) -> str:
    """The client's ``session.update`` as its ``realtime.session.update`` event tells it:
    the audio format it asked for (both ways), and the fields the endpoint ignored."""
    session: dict[str, object] = {"type": "realtime"}
    name = args.get("format")
    if isinstance(name, str):
        fmt: dict[str, object] = {"type": name}
        if name == "audio/pcm":
            fmt["rate"] = 24000
        session["audio"] = {"input": {"format": fmt}, "output": {"format": fmt}}
    ignored = args.get("ignored")
    for key in ignored if isinstance(ignored, list) else ():
        if key in _IGNORED_PLACEHOLDERS:
            session[str(key)] = _IGNORED_PLACEHOLDERS[key]
    return _json({"type": "session.update", "session": session})


def make_peer(
    call: RecordedCall, t0: float, audio_ahead_ms: float = 0.0, audio_join_ms: float = 0.0
) -> ReplayPeer:
    """The peer for ``call``'s door (see :class:`ReplayPeer` for the two audio settings)."""
    if call.door == "twilio":
        return TwilioPeer(call, t0, audio_ahead_ms, audio_join_ms)
    if call.door == "browser":
        return browser_peer(call, t0, audio_ahead_ms, audio_join_ms)
    return realtime_peer(call, t0, audio_ahead_ms, audio_join_ms)
