"""The Twilio transport: a Media Streams WebSocket as the caller's side of a call.

Reads ``media``, ``dtmf``, ``mark`` and ``stop`` (the stream's ``start`` was
read, and its admission token checked, before the call began), and writes
agent audio as 20 ms ``media`` frames, ``mark`` and ``clear``.

Two tasks. The reader hands each caller frame to the supervisor's line
(:data:`~.messages.HearCaller`, no task switch) and everything else to the
supervisor's inbox. The player takes the supervisor's commands and sends
agent audio at most ``playout_lead_ms`` ahead of real time, so a ``clear``
has little to discard and Twilio's mark echoes say what the caller has
actually heard, topped up in batches (:mod:`.playout`). It is one task: a
frame that is due goes out as soon as its command arrives, and a
:class:`ClearPlayback` is carried out as soon as it arrives (the player
waits for the next command and the next due frame at once; it never sleeps
behind queued audio).

What was heard: after every :data:`MARK_EVERY_MS` of agent audio sent, the
player sends a ``mark`` (at most 10 a second, where one per 20 ms frame
would make six WebSocket messages per frame pair); Twilio echoes a mark once
the audio before it has played (Media Streams docs, "mark" message), so the
last echo is the heard position, exact to :data:`MARK_EVERY_MS`. The
supervisor's own marks (``response:<id>`` after each answer) count as
positions too, so the end of an answer is exact. Echoes are looked up in the
table of marks sent, never parsed: an echo of a name never sent, or echoed
twice, is ignored. On ``clear`` Twilio echoes every pending mark at once; the
positions they carried are dropped (that audio was never heard) and the
supervisor's marks among them are still passed on.

Recording (``ctx.tape``, :mod:`.tape`): each caller frame as received, each
agent frame once sent, and the ``clear`` (the player drops what it had not
played); one call and an append per frame, nothing more on the audio path.

A malformed frame from Twilio is logged as an ``error`` event and skipped:
the call goes on. The door's budget (:mod:`.frame_budget`, as on the other
doors) ends it when the peer is not Twilio: a frame longer than the codec's
``MAX_INBOUND_CHARS`` (refused unread) closes the socket with 1009, and
:data:`MAX_BAD_FRAMES_IN_A_ROW` unusable frames in a row (or
``MAX_BAD_PER_CALL`` in the call) with 1008; the supervisor is told
(:class:`~.messages.TransportFailed`), so ``session.end`` says why.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import structlog
import trio

from switchboard.codecs import twilio_media as wire

from .context import CallContext, EventSink
from .frame_budget import MAX_BAD_IN_A_ROW, FrameBudget, HangUp
from .messages import (
    AudioChunk,
    CallerAudio,
    CallerDtmf,
    CallerHungUp,
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

log = structlog.get_logger("switchboard.twilio")

FRAME_MS = 1000.0 * wire.FRAME_BYTES / wire.SAMPLE_RATE  # 20.0
END_MARK = "switchboard:end-of-call"
AUDIO_MARK = "audio:"
MARK_EVERY_MS = 100.0
"""The longest stretch of agent audio sent without a mark: the heard position's resolution."""

MAX_BAD_FRAMES_IN_A_ROW = MAX_BAD_IN_A_ROW

_Queued = PlayAudio | MarkPlayback | EndCall


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
        hear: HearCaller,
        events: EventSink,
        playout_lead_ms: float = 300.0,
    ) -> None:
        self.ctx = ctx
        self._socket = socket
        self._sid = stream_sid
        self._inbox = inbox
        self._to_supervisor = to_supervisor
        self._hear = hear
        self._replies = to_supervisor.clone()  # the player's (PlaybackCleared)
        self._events = events
        self._lead_s = playout_lead_ms / 1000.0
        self._wait_s = self._lead_s - top_up_s(playout_lead_ms)  # top up when this little is left
        self._playout_end_s = 0.0  # when the audio sent so far will have played (trio time)
        self._end_heard = trio.Event()
        self._caller_gone = False  # stop or a closed socket: nothing more can be heard
        self._queue: deque[_Queued] = deque()
        self._offset = 0  # bytes of the queue's first PlayAudio already sent
        self._responses: dict[str, _Heard] = {}
        self._playing: str | None = None  # response id of the audio sent last
        self._unmarked_ms = 0.0  # audio sent since the last mark
        self._mark_seq = 0
        self._positions: dict[str, tuple[str, float]] = {}  # mark -> (response, sent_ms)
        self._named: set[str] = set()  # the supervisor's marks sent, not yet echoed
        self.frames_sent = 0
        self.marks_sent = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read)
                task_status.started()
                async with self._replies:
                    await self._play_out()
                # The supervisor is done: nothing more will be played.
                await self._socket.close(*self.ctx.fault.close_frame())
        except Exception as exc:
            self.ctx.fault.record(exc)
            raise
        finally:
            with trio.CancelScope(shield=True):
                await self._socket.close(*self.ctx.fault.close_frame())
                await self._replies.aclose()
                await self._events.aclose()

    # -- Twilio -> call ------------------------------------------------------

    async def _read(self) -> None:
        parse, media_type, hear, sid = wire.parse_inbound, wire.Media, self._hear, self._sid
        tape = self.ctx.tape
        async with self._to_supervisor:
            reason = "stream closed"
            budget = FrameBudget()
            try:
                while True:
                    text = await self._socket.receive()
                    if text is None:
                        break
                    try:
                        message = parse(text)
                    except wire.MediaStreamError as exc:
                        await self._events.emit(
                            "error", where="twilio.stream", reason=exc.reason, detail=exc.detail
                        )
                        hang_up = budget.bad(exc.reason, exc.detail)
                        if hang_up is not None:
                            await self._give_up_on_peer(hang_up)
                            return
                        continue
                    budget.good()
                    if type(message) is media_type and message.stream_sid == sid:
                        body = message.media  # the hot path: one frame of caller audio
                        tape.caller(body.payload)
                        hear(CallerAudio(AudioChunk(body.payload, "pcmu", 8000), body.timestamp))
                    elif isinstance(message, wire.Stop):
                        reason = "caller hung up"
                        break
                    else:
                        await self._forward(message)
                self._caller_gone = True
                await self._to_supervisor.send(CallerHungUp(reason))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the supervisor has already ended the call

    async def _give_up_on_peer(self, hang_up: HangUp) -> None:
        await self._to_supervisor.send(TransportFailed(hang_up.reason, hang_up.detail))
        await self._socket.close(hang_up.code, hang_up.reason)

    async def _forward(self, message: wire.Inbound) -> None:
        if isinstance(message, wire.Media):
            await self._events.emit(
                "error",
                where="twilio.stream",
                reason="bad_field",
                detail=f"media for another stream {message.stream_sid[:40]!r}",
            )
        elif isinstance(message, wire.MarkPlayed):
            await self._on_mark(message.name)
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

    async def _on_mark(self, name: str) -> None:
        position = self._positions.pop(name, None)
        if position is not None:
            heard = self._responses.get(position[0])
            if heard is not None and position[1] > heard.heard_ms:
                heard.heard_ms = position[1]
        if name == END_MARK:
            self._end_heard.set()
        elif name in self._named:
            self._named.discard(name)
            await self._to_supervisor.send(PlaybackMarked(name))

    # -- call -> Twilio ------------------------------------------------------

    async def _play_out(self) -> None:
        """Take commands and send what is due, in order; return after the hang-up."""
        inbox = self._inbox
        while True:
            if self._queue and not await self._send_due():
                return  # hung up
            try:
                if self._queue:  # wait for the next command or the next frame, whichever first
                    command = None
                    with trio.move_on_at(self._playout_end_s - self._wait_s):
                        command = await inbox.receive()
                    if command is None:
                        continue
                else:
                    command = await inbox.receive()
            except trio.EndOfChannel:
                if not self._caller_gone:  # a hung-up caller hears no more: end at once
                    await self._play_remaining()
                return
            if type(command) is PlayAudio or isinstance(command, MarkPlayback | EndCall):
                self._queue.append(command)
            elif isinstance(command, ClearPlayback):
                await self._clear()
            # ShowEvent: a phone has no screen.

    async def _play_remaining(self) -> None:
        """The supervisor is done: send what is queued, paced, then return."""
        while self._queue and await self._send_due():
            if self._queue:
                await trio.sleep_until(self._playout_end_s - self._wait_s)

    async def _send_due(self) -> bool:
        """Send the queue's commands that are due; False once the call was hung up."""
        queue = self._queue
        while queue:
            command = queue[0]
            if type(command) is PlayAudio:
                if not await self._send_frames(command.chunk, command.response_id):
                    return True  # the rest is not due yet
                self._offset = 0
            elif isinstance(command, MarkPlayback):
                self._named.add(command.name)
                await self._mark(command.name)
            elif isinstance(command, EndCall):
                queue.popleft()
                await self._hang_up(command.reason)
                return False
            queue.popleft()
        return True

    async def _send_frames(self, chunk: AudioChunk, response_id: str) -> bool:
        """Send ``chunk``'s frames from ``self._offset`` while due; True when all are sent."""
        if chunk.encoding != "pcmu" or chunk.sample_rate != wire.SAMPLE_RATE:
            raise ValueError(f"Twilio plays G.711 mu-law at 8000 Hz, got {chunk}")
        heard = self._responses.get(response_id)
        if heard is None:
            heard = self._responses[response_id] = _Heard()
        data, sid, lead_s, tape = chunk.data, self._sid, self._lead_s, self.ctx.tape
        while self._offset < len(data):
            now = trio.current_time()
            if self._playout_end_s < now:
                self._playout_end_s = now
            elif now < self._playout_end_s - lead_s:  # a lead's worth ahead: the player waits
                return False  # until a top-up step below it (self._wait_s), then sends again
            frame = data[self._offset : self._offset + wire.FRAME_BYTES]
            self._offset += len(frame)
            await self._socket.send(wire.encode_outbound(wire.media(sid, frame)))
            tape.agent(frame)
            self._playing = response_id
            frame_ms = len(frame) * (1000.0 / wire.SAMPLE_RATE)
            self._playout_end_s += frame_ms / 1000.0
            heard.sent_ms += frame_ms
            self.frames_sent += 1
            self._unmarked_ms += frame_ms
            if self._unmarked_ms >= MARK_EVERY_MS:
                self._mark_seq += 1
                await self._mark(f"{AUDIO_MARK}{self._mark_seq}")
        return True

    async def _mark(self, name: str) -> None:
        """Send mark ``name``; its echo will say the audio sent so far has played."""
        if self._playing is not None:
            self._positions[name] = (self._playing, self._responses[self._playing].sent_ms)
        self._unmarked_ms = 0.0
        self.marks_sent += 1
        await self._socket.send(wire.encode_outbound(wire.mark(self._sid, name)))

    async def _clear(self) -> None:
        """Barge-in: drop queued audio, ``clear`` Twilio's buffer, say what was heard."""
        self._queue = deque(c for c in self._queue if not isinstance(c, PlayAudio))
        self._offset = 0
        self._positions.clear()  # their echoes, which the clear releases, were not heard
        self._unmarked_ms = 0.0
        await self._socket.send(wire.encode_outbound(wire.Clear(self._sid)))
        self.ctx.tape.agent_cleared()
        self._playout_end_s = trio.current_time()
        response_id, self._playing = self._playing, None
        heard = self._responses.get(response_id or "", _Heard())
        try:
            await self._replies.send(
                PlaybackCleared(response_id, round(heard.heard_ms, 1), round(heard.sent_ms, 1))
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the supervisor is gone; the call is ending

    async def _hang_up(self, reason: str) -> None:
        """Close once the caller has heard everything sent (Twilio's echo of a last mark)."""
        await self._mark(END_MARK)
        remaining_s = max(0.0, self._playout_end_s - trio.current_time())
        with trio.move_on_after(remaining_s + 2.0):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._discard_commands)  # the supervisor must not block
                await self._end_heard.wait()
                nursery.cancel_scope.cancel()
        await self._events.emit("hangup", reason=reason)
        await self._socket.close(1000, close_reason(reason))

    async def _discard_commands(self) -> None:
        async for _ in self._inbox:
            pass
