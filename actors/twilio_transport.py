"""The Twilio transport: a Media Streams WebSocket as the caller's side of a call.

Reads ``media``, ``dtmf``, ``mark`` and ``stop`` (the stream's ``start`` was
read, and its admission token checked, before the call began), and writes
agent audio as 20 ms ``media`` frames, ``mark`` and ``clear``.

Three tasks: the reader (Twilio -> supervisor), the command taker (supervisor
-> a playout queue; a :class:`ClearPlayback` is carried out at once, never
behind queued audio), and the player, which sends the queue at most
``playout_lead_ms`` ahead of real time, so that a ``clear`` has little to
discard and Twilio's mark echoes say what the caller has actually heard.

What was heard: after each chunk of agent audio, and at least every
:data:`MARK_EVERY_MS` of it, the player sends a mark ``audio:<response
id>:<ms sent>``; Twilio echoes a mark once the audio before it has played
(Media Streams docs, "mark" message), so the last echo is the heard position.
On ``clear`` Twilio echoes every pending mark at once; those echoes are
ignored. A malformed frame from Twilio is logged as an ``error`` event and
skipped: the call goes on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import structlog
import trio

from switchboard.codecs import twilio_media as wire

from .context import CallContext, EventSink
from .messages import (
    AudioChunk,
    CallerAudio,
    CallerDtmf,
    CallerHungUp,
    ClearPlayback,
    EndCall,
    MarkPlayback,
    PlayAudio,
    PlaybackCleared,
    PlaybackMarked,
    ShowEvent,
    ToSupervisor,
    ToTransport,
)
from .sockets import MessageSocket

log = structlog.get_logger("switchboard.twilio")

FRAME_S = wire.FRAME_BYTES / wire.SAMPLE_RATE  # 0.02
END_MARK = "switchboard:end-of-call"
AUDIO_MARK = "audio:"
MARK_EVERY_MS = 100.0
"""The longest stretch of agent audio sent without a mark: the heard position's resolution."""


@dataclass
class _Heard:
    """One response's audio: sent to Twilio, and confirmed played by mark echoes (ms)."""

    sent_ms: float = 0.0
    heard_ms: float = 0.0


class TwilioTransport:
    def __init__(
        self,
        ctx: CallContext,
        *,
        socket: MessageSocket,
        stream_sid: str,
        inbox: trio.MemoryReceiveChannel[ToTransport],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        events: EventSink,
        playout_lead_ms: float = 300.0,
    ) -> None:
        self.ctx = ctx
        self._socket = socket
        self._sid = stream_sid
        self._inbox = inbox
        self._to_supervisor = to_supervisor
        self._replies = to_supervisor.clone()  # the command taker's (PlaybackCleared)
        self._events = events
        self._lead_s = playout_lead_ms / 1000.0
        self._playout_end_s = 0.0  # when the audio sent so far will have played (trio time)
        self._end_heard = trio.Event()
        self._queue: deque[ToTransport | None] = deque()  # None: the supervisor is done
        self._queued = trio.Event()
        self._generation = 0  # bumped by each clear: audio of older generations is dropped
        self._responses: dict[str, _Heard] = {}
        self._playing: str | None = None  # response id of the audio sent last
        self._pending_marks: set[str] = set()
        self._stale_marks: set[str] = set()
        self.frames_sent = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read)
                nursery.start_soon(self._take_commands)
                task_status.started()
                await self._play_out()
                # The supervisor is done: nothing more will be played.
                await self._socket.close(1000, "call ended")
        finally:
            with trio.CancelScope(shield=True):
                await self._socket.close(1000, "call ended")
                await self._replies.aclose()
                await self._events.aclose()

    # -- Twilio -> call ------------------------------------------------------

    async def _read(self) -> None:
        async with self._to_supervisor:
            reason = "stream closed"
            try:
                while True:
                    text = await self._socket.receive()
                    if text is None:
                        break
                    try:
                        message = wire.parse_inbound(text)
                    except wire.MediaStreamError as exc:
                        await self._events.emit(
                            "error", where="twilio.stream", reason=exc.reason, detail=exc.detail
                        )
                        continue
                    if isinstance(message, wire.Stop):
                        reason = "caller hung up"
                        break
                    await self._forward(message)
                await self._to_supervisor.send(CallerHungUp(reason))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the supervisor has already ended the call

    async def _forward(self, message: wire.Inbound) -> None:
        if isinstance(message, wire.Media):
            if message.stream_sid != self._sid:
                await self._events.emit(
                    "error",
                    where="twilio.stream",
                    reason="bad_field",
                    detail=f"media for another stream {message.stream_sid[:40]!r}",
                )
                return
            chunk = AudioChunk(message.payload, "pcmu", wire.SAMPLE_RATE)
            await self._to_supervisor.send(CallerAudio(chunk, float(message.timestamp_ms)))
        elif isinstance(message, wire.MarkPlayed):
            if message.name == END_MARK:
                self._end_heard.set()
            elif message.name.startswith(AUDIO_MARK):
                self._on_audio_mark(message.name)
            else:
                await self._to_supervisor.send(PlaybackMarked(message.name))
        elif isinstance(message, wire.Dtmf):
            await self._to_supervisor.send(CallerDtmf(message.digit))
        elif isinstance(message, wire.Start):
            await self._events.emit(
                "error",
                where="twilio.stream",
                reason="unexpected_start",
                detail="a second 'start' on a running stream",
            )
        # 'connected' carries nothing the call needs.

    def _on_audio_mark(self, name: str) -> None:
        if name in self._stale_marks:  # echoed by a clear: that audio was never heard
            self._stale_marks.discard(name)
            return
        self._pending_marks.discard(name)
        response_id, _, ms = name.removeprefix(AUDIO_MARK).rpartition(":")
        heard = self._responses.get(response_id)
        if heard is not None:
            heard.heard_ms = max(heard.heard_ms, float(ms))

    # -- call -> Twilio ------------------------------------------------------

    async def _take_commands(self) -> None:
        """Queue commands for the player; carry out a clear at once."""
        async with self._replies:
            async for command in self._inbox:
                if isinstance(command, ClearPlayback):
                    await self._clear()
                elif isinstance(command, ShowEvent):
                    continue  # a phone has no screen
                else:
                    self._enqueue(command)
            self._enqueue(None)

    def _enqueue(self, item: ToTransport | None) -> None:
        self._queue.append(item)
        self._queued.set()

    async def _clear(self) -> None:
        """Barge-in: drop queued audio, ``clear`` Twilio's buffer, say what was heard."""
        self._generation += 1
        self._queue = deque(item for item in self._queue if not isinstance(item, PlayAudio))
        self._stale_marks |= self._pending_marks
        self._pending_marks.clear()
        await self._send(wire.Clear(self._sid))
        self._playout_end_s = trio.current_time()
        response_id = self._playing
        heard = self._responses.get(response_id or "", _Heard())
        self._playing = None
        try:
            await self._replies.send(
                PlaybackCleared(response_id, round(heard.heard_ms, 1), round(heard.sent_ms, 1))
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the supervisor is gone; the call is ending

    async def _play_out(self) -> None:
        """Send queued commands in order, pacing audio; return after the hang-up."""
        while True:
            while not self._queue:
                self._queued = trio.Event()
                await self._queued.wait()
            command = self._queue.popleft()
            if command is None:
                return
            if isinstance(command, PlayAudio):
                await self._play(command.chunk, command.response_id)
            elif isinstance(command, MarkPlayback):
                await self._send(wire.OutboundMark(self._sid, command.name))
            elif isinstance(command, EndCall):
                await self._hang_up(command.reason)
                return

    async def _play(self, chunk: AudioChunk, response_id: str) -> None:
        if chunk.encoding != "pcmu" or chunk.sample_rate != wire.SAMPLE_RATE:
            raise ValueError(f"Twilio plays G.711 mu-law at 8000 Hz, got {chunk}")
        generation = self._generation
        heard = self._responses.setdefault(response_id, _Heard())
        data = chunk.data
        unmarked_ms = 0.0
        for i in range(0, len(data), wire.FRAME_BYTES):
            now = trio.current_time()
            self._playout_end_s = max(self._playout_end_s, now)
            ahead = self._playout_end_s - now
            if ahead > self._lead_s:
                await trio.sleep(ahead - self._lead_s)
                if generation != self._generation:
                    return  # cleared while waiting: the rest is never sent
            frame = data[i : i + wire.FRAME_BYTES]
            await self._send(wire.OutboundMedia(self._sid, frame))
            self._playing = response_id
            frame_ms = 1000.0 * len(frame) / wire.SAMPLE_RATE
            self._playout_end_s += frame_ms / 1000.0
            heard.sent_ms += frame_ms
            unmarked_ms += frame_ms
            self.frames_sent += 1
            if unmarked_ms >= MARK_EVERY_MS or i + wire.FRAME_BYTES >= len(data):
                await self._mark_audio(response_id, heard.sent_ms)
                unmarked_ms = 0.0

    async def _mark_audio(self, response_id: str, sent_ms: float) -> None:
        name = f"{AUDIO_MARK}{response_id}:{sent_ms:.0f}"
        self._pending_marks.add(name)
        await self._send(wire.OutboundMark(self._sid, name))

    async def _hang_up(self, reason: str) -> None:
        """Close once the caller has heard everything sent (Twilio's echo of a last mark)."""
        await self._send(wire.OutboundMark(self._sid, END_MARK))
        remaining_s = max(0.0, self._playout_end_s - trio.current_time())
        with trio.move_on_after(remaining_s + 2.0):
            await self._end_heard.wait()
        await self._events.emit("hangup", reason=reason)
        await self._socket.close(1000, reason[:120])

    async def _send(self, message: wire.Outbound) -> None:
        await self._socket.send(wire.encode_outbound(message))
