"""The Twilio transport: a Media Streams WebSocket as the caller's side of a call.

Reads ``media``, ``dtmf``, ``mark`` and ``stop`` (the stream's ``start`` was
read, and its admission token checked, before the call began), and writes
agent audio as 20 ms ``media`` frames, ``mark`` and ``clear``.

Agent audio is sent at most ``playout_lead_ms`` ahead of real time, so that a
``clear`` has little to discard and Twilio's mark echoes say what the caller
has actually heard. A malformed frame from Twilio is logged as an ``error``
event and skipped: the call goes on.
"""

from __future__ import annotations

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
    PlaybackMarked,
    ToSupervisor,
    ToTransport,
)
from .sockets import MessageSocket

log = structlog.get_logger("switchboard.twilio")

FRAME_S = wire.FRAME_BYTES / wire.SAMPLE_RATE  # 0.02
END_MARK = "switchboard:end-of-call"


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
        self._events = events
        self._lead_s = playout_lead_ms / 1000.0
        self._playout_end_s = 0.0  # when the audio sent so far will have played (trio time)
        self._end_heard = trio.Event()
        self.frames_sent = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read)
                task_status.started()
                await self._write()
                # The supervisor is done: nothing more will be played.
                await self._socket.close(1000, "call ended")
        finally:
            with trio.CancelScope(shield=True):
                await self._socket.close(1000, "call ended")
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

    # -- call -> Twilio ------------------------------------------------------

    async def _write(self) -> None:
        async for command in self._inbox:
            if isinstance(command, PlayAudio):
                await self._play(command.chunk)
            elif isinstance(command, MarkPlayback):
                await self._send(wire.OutboundMark(self._sid, command.name))
            elif isinstance(command, ClearPlayback):
                await self._send(wire.Clear(self._sid))
                self._playout_end_s = trio.current_time()
            elif isinstance(command, EndCall):
                await self._hang_up(command.reason)
                return

    async def _play(self, chunk: AudioChunk) -> None:
        if chunk.encoding != "pcmu" or chunk.sample_rate != wire.SAMPLE_RATE:
            raise ValueError(f"Twilio plays G.711 mu-law at 8000 Hz, got {chunk}")
        data = chunk.data
        for i in range(0, len(data), wire.FRAME_BYTES):
            now = trio.current_time()
            self._playout_end_s = max(self._playout_end_s, now)
            ahead = self._playout_end_s - now
            if ahead > self._lead_s:
                await trio.sleep(ahead - self._lead_s)
            frame = data[i : i + wire.FRAME_BYTES]
            await self._send(wire.OutboundMedia(self._sid, frame))
            self._playout_end_s += len(frame) / wire.SAMPLE_RATE
            self.frames_sent += 1

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
