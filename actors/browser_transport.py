"""The browser transport: a practice page's WebSocket as the caller's side of a call.

Wire format: :mod:`switchboard.codecs.browser_protocol` (JSON, base64 PCM16
at the sample rate the page stated when connecting, ``ctx.caller_format``).

Reads ``audio`` (-> :class:`CallerAudio`, ``offset_ms`` counted from the
samples received) and ``text`` (a typed caller turn: logged as a
``caller.text`` event, then :class:`CallerText` to the supervisor, which
answers it like a spoken turn; the codec bounds its length).
A malformed frame is logged as an ``error`` event, reported to the page, and
skipped: the call goes on, within the door's budget (:mod:`.frame_budget`: a
frame over the codec's ``MAX_INBOUND_CHARS`` closes with 1009, too many
unusable frames with 1008, and the supervisor is told).

Writes agent audio as 20 ms ``audio`` frames, at most ``playout_lead_ms``
ahead of real time, from a queue that a :class:`ClearPlayback` empties at
once (the page is sent ``audio_interrupted`` and drops what it holds). A
browser does not echo marks: a :class:`MarkPlayback` is answered with
:class:`PlaybackMarked` when the wall clock says the audio sent before it has
played, and what was heard at a barge-in (:class:`PlaybackCleared`) is
estimated the same way.

Recording (``ctx.tape``, :mod:`.tape`): each caller frame as received, each
agent frame once sent, and each clear (the page drops what it holds).

The call's events (``call_events``, when given) become the page's
``agent_start`` / ``agent_end``, ``transcript``, ``tool_start`` / ``tool_end``
and ``timeline`` messages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
import trio

from switchboard.codecs import browser_protocol as wire

from .context import CallContext, EventSink
from .frame_budget import FrameBudget
from .messages import (
    AudioChunk,
    CallerAudio,
    CallerHungUp,
    CallerText,
    CallEvent,
    ClearPlayback,
    EndCall,
    HearCaller,
    MarkPlayback,
    PlayAudio,
    PlaybackCleared,
    PlaybackMarked,
    ToSupervisor,
    ToTransport,
    TransportFailed,
)
from .playout import top_up_s
from .sockets import MessageSocket, close_reason

log = structlog.get_logger("switchboard.browser")

FRAME_MS: Final = 20
END_OF_CALL_GRACE_S: Final = 2.0
TIMELINE_EVENTS: Final = frozenset(
    {
        "provider.ready",
        "provider.failed",
        "provider.skipped",
        "failover.switch",
        "failover.suppressed",
        "speech.started",
        "call.ending",
        "hangup",
    }
)
PAGE_EVENTS: Final = TIMELINE_EVENTS | {
    "response.start",
    "response.done",
    "turn:user",
    "turn:agent",
    "tool:call",
    "tool:result",
}
"""The event types :func:`page_message` shows the page; every other event it drops."""


@dataclass(frozen=True, slots=True)
class _Frame:
    pcm: bytes
    response_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class _Mark:
    name: str
    generation: int


def page_message(event: CallEvent) -> wire.Outbound | None:
    """What the page is shown of a call event, or None (pure).

    ``response.start`` / ``response.done`` -> ``agent_start`` / ``agent_end``;
    ``turn:user`` / ``turn:agent`` -> ``transcript``; ``tool:call`` /
    ``tool:result`` -> ``tool_start`` / ``tool_end``; failovers, detected
    speech and the end of the call -> ``timeline``.
    """
    p: Mapping[str, Any] = event.payload
    if event.type == "response.start":
        return wire.AgentStart(str(p.get("response_id")), bool(p.get("greeting")))
    if event.type == "response.done":
        return wire.AgentEnd(str(p.get("response_id")), bool(p.get("interrupted")))
    if event.type in ("turn:user", "turn:agent"):
        role: wire.Role = "caller" if event.type == "turn:user" else "agent"
        return wire.Transcript(role, str(p.get("text", "")), True)
    if event.type == "tool:call":
        arguments = p.get("arguments")
        return wire.ToolStart(
            str(p.get("call_id")),
            str(p.get("name")),
            dict(arguments) if isinstance(arguments, Mapping) else {},
        )
    if event.type == "tool:result":
        return wire.ToolEnd(
            str(p.get("call_id")), str(p.get("name")), bool(p.get("ok")), str(p.get("output", ""))
        )
    if event.type in TIMELINE_EVENTS:
        return wire.Timeline(event.type, round(event.t_ms, 1), dict(p))
    return None


class BrowserTransport:
    """One browser call's transport actor (see the module docstring)."""

    def __init__(
        self,
        ctx: CallContext,
        *,
        socket: MessageSocket,
        inbox: trio.MemoryReceiveChannel[ToTransport],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        events: EventSink,
        hear: HearCaller | None = None,
        call_events: trio.MemoryReceiveChannel[CallEvent] | None = None,
        playout_lead_ms: float = 300.0,
    ) -> None:
        fmt = ctx.caller_format
        if fmt.encoding != "pcm16" or fmt.sample_rate not in wire.SAMPLE_RATES:
            raise ValueError(f"a browser call is PCM16 at {wire.SAMPLE_RATES} Hz, got {fmt}")
        self.ctx = ctx
        self._socket = socket
        self._inbox = inbox
        self._to_supervisor = to_supervisor
        self._hear = hear  # the supervisor's line for caller audio (else: the channel)
        self._events = events
        self._call_events = call_events
        self._lead_s = playout_lead_ms / 1000.0
        self._top_up_s = top_up_s(playout_lead_ms)
        self._rate = fmt.sample_rate
        self._frame_bytes = self._rate * FRAME_MS // 1000 * 2
        self._send_lock = trio.Lock()
        self._queue: deque[_Frame | _Mark] = deque()
        self._queued = trio.Event()
        self._drained = trio.Event()
        self._drained.set()
        self._generation = 0
        self._playout_end_s = 0.0  # when the audio sent so far will have played (trio time)
        self._marks: deque[tuple[str, float]] = deque()  # (name, due), in order
        self._marks_changed = trio.Event()
        self._response_id: str | None = None  # the response whose audio was sent last
        self._response_start_s = 0.0  # when its first frame starts playing
        self._response_sent_ms = 0.0
        self._audio_ended: str | None = None
        self._samples_in = 0
        self.frames_sent = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            info = wire.SessionInfo(str(self.ctx.session_id), self._rate, self.ctx.agent.name)
            await self._send(info)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read)  # ends when the socket closes: CallerHungUp
                async with trio.open_nursery() as helpers:
                    helpers.start_soon(self._pump)
                    helpers.start_soon(self._answer_marks, self._to_supervisor.clone())
                    if self._call_events is not None:
                        helpers.start_soon(self._relay, self._call_events)
                    task_status.started()
                    async with self._to_supervisor.clone() as replies:
                        await self._write(replies)
                    helpers.cancel_scope.cancel()
                await self._socket.close(*self.ctx.fault.close_frame())
        except Exception as exc:
            self.ctx.fault.record(exc)
            raise
        finally:
            with trio.CancelScope(shield=True):
                await self._socket.close(*self.ctx.fault.close_frame())
                await self._events.aclose()

    # -- page -> call --------------------------------------------------------

    async def _read(self) -> None:
        budget = FrameBudget()
        tape = self.ctx.tape
        async with self._to_supervisor:
            try:
                while True:
                    text = await self._socket.receive()
                    if text is None:
                        break
                    try:
                        message = wire.parse_inbound(text)
                    except wire.BrowserProtocolError as exc:
                        await self._events.emit(
                            "error", where="browser.stream", reason=exc.reason, detail=exc.detail
                        )
                        await self._send(wire.Error(exc.reason, exc.detail))
                        hang_up = budget.bad(exc.reason, exc.detail)
                        if hang_up is not None:  # issue 11: a broken or hostile page
                            await self._to_supervisor.send(
                                TransportFailed(hang_up.reason, hang_up.detail)
                            )
                            await self._socket.close(hang_up.code, hang_up.reason)
                            return
                        continue
                    budget.good()
                    if isinstance(message, wire.AudioIn):
                        tape.caller(message.pcm)
                        offset_ms = self._samples_in * 1000.0 / self._rate
                        self._samples_in += len(message.pcm) // 2
                        chunk = AudioChunk(message.pcm, "pcm16", self._rate)
                        audio = CallerAudio(chunk, offset_ms)
                        if self._hear is not None:
                            self._hear(audio)
                        else:
                            await self._to_supervisor.send(audio)
                    else:
                        await self._events.emit("caller.text", text=message.text)
                        await self._to_supervisor.send(CallerText(message.text))
                await self._to_supervisor.send(CallerHungUp("caller hung up"))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the supervisor has already ended the call

    # -- call -> page --------------------------------------------------------

    async def _write(self, replies: trio.MemorySendChannel[ToSupervisor]) -> None:
        async for command in self._inbox:
            if isinstance(command, PlayAudio):
                self._enqueue_audio(command.chunk, command.response_id)
            elif isinstance(command, MarkPlayback):
                self._enqueue(_Mark(command.name, self._generation))
            elif isinstance(command, ClearPlayback):
                cleared = self._clear()
                await self._send(wire.AudioInterrupted(cleared.response_id, cleared.heard_ms))
                try:
                    await replies.send(cleared)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            elif isinstance(command, EndCall):
                await self._hang_up(command.reason)
                return

    def _enqueue_audio(self, chunk: AudioChunk, response_id: str) -> None:
        if chunk.encoding != "pcm16" or chunk.sample_rate != self._rate:
            raise ValueError(f"this page plays PCM16 at {self._rate} Hz, got {chunk}")
        data = chunk.data
        for i in range(0, len(data), self._frame_bytes):
            self._enqueue(_Frame(data[i : i + self._frame_bytes], response_id, self._generation))

    def _enqueue(self, item: _Frame | _Mark) -> None:
        self._queue.append(item)
        self._drained = trio.Event() if self._drained.is_set() else self._drained
        self._queued.set()

    def _clear(self) -> PlaybackCleared:
        """Drop queued audio; what of the current response was heard and sent."""
        now = trio.current_time()
        self.ctx.tape.agent_cleared()  # the page drops what it holds (audio_interrupted)
        self._generation += 1
        dropped_marks = [item.name for item in self._queue if isinstance(item, _Mark)]
        self._queue.clear()
        self._drained.set()
        heard_ms = 0.0
        if self._response_id is not None:
            heard_ms = min(self._response_sent_ms, max(0.0, now - self._response_start_s) * 1000)
        cleared = PlaybackCleared(
            self._response_id, round(heard_ms, 1), round(self._response_sent_ms, 1)
        )
        self._playout_end_s = now
        # As Twilio does on a clear: every pending mark is answered at once.
        self._marks = deque([(name, now) for name, _ in self._marks])
        self._marks.extend((name, now) for name in dropped_marks)
        self._marks_changed.set()
        return cleared

    async def _pump(self) -> None:
        """Send queued frames paced to real time; queue marks at their playout time."""
        while True:
            if not self._queue:
                self._drained.set()
                await self._queued.wait()
                self._queued = trio.Event()
                continue
            item = self._queue[0]
            if isinstance(item, _Mark):
                self._queue.popleft()
                await self._end_audio()
                self._marks.append((item.name, max(self._playout_end_s, trio.current_time())))
                self._marks_changed.set()
                continue
            now = trio.current_time()
            self._playout_end_s = max(self._playout_end_s, now)
            ahead = self._playout_end_s - now
            if ahead > self._lead_s:  # topped up: wait until it has fallen a step below
                await trio.sleep(ahead - self._lead_s + self._top_up_s)
                if not self._queue or self._queue[0] is not item:
                    continue  # a clear emptied the queue meanwhile
            self._queue.popleft()
            await self._play(item)

    async def _play(self, frame: _Frame) -> None:
        if frame.response_id != self._response_id:
            await self._end_audio()
            self._response_id = frame.response_id
            self._response_start_s = self._playout_end_s
            self._response_sent_ms = 0.0
            self._audio_ended = None
        duration_s = len(frame.pcm) / 2 / self._rate
        await self._send(wire.AudioOut(frame.pcm, frame.response_id))
        self.ctx.tape.agent(frame.pcm)
        self._playout_end_s += duration_s
        self._response_sent_ms += duration_s * 1000
        self.frames_sent += 1

    async def _end_audio(self) -> None:
        """Tell the page the last response's audio is all sent (once)."""
        rid = self._response_id
        if rid is not None and self._audio_ended != rid:
            self._audio_ended = rid
            await self._send(wire.AudioEnd(rid))

    async def _answer_marks(self, replies: trio.MemorySendChannel[ToSupervisor]) -> None:
        async with replies:
            while True:
                if not self._marks:
                    await self._marks_changed.wait()
                    self._marks_changed = trio.Event()
                    continue
                name, due = self._marks[0]
                with trio.move_on_at(due) as timer:
                    await self._marks_changed.wait()
                if not timer.cancelled_caught:  # marks changed (a clear): look again
                    self._marks_changed = trio.Event()
                    continue
                self._marks.popleft()
                try:
                    await replies.send(PlaybackMarked(name))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return

    async def _hang_up(self, reason: str) -> None:
        """Close once the page has played everything sent (by the clock)."""
        await self._drained.wait()
        await self._end_audio()
        remaining_s = max(0.0, self._playout_end_s - trio.current_time())
        await trio.sleep(min(remaining_s, END_OF_CALL_GRACE_S + self._lead_s))
        await self._events.emit("hangup", reason=reason)
        await self._socket.close(1000, close_reason(reason))

    async def _relay(self, call_events: trio.MemoryReceiveChannel[CallEvent]) -> None:
        async with call_events:
            async for event in call_events:
                message = page_message(event)
                if message is not None:
                    await self._send(message)

    async def _send(self, message: wire.Outbound) -> None:
        async with self._send_lock:
            await self._socket.send(wire.encode_outbound(message))
