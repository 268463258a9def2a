"""The OpenAI-compatible transport: a ``/v1/realtime`` client as the caller's side of a call.

The client speaks the OpenAI Realtime protocol (OpenAI API reference,
"Realtime: client events" / "server events"; wire format in
:mod:`switchboard.codecs.openai_realtime`) as if the runtime were OpenAI; the
runtime's agent, tools, event log and failover answer it.

Client -> call:

- ``input_audio_buffer.append``: caller audio, cut into 20 ms
  :class:`CallerAudio` frames in the call's format, ``offset_ms`` counted
  from the first byte appended.
- ``session.update``: answered by ``session.updated`` with the configuration
  *in effect*: the agent's instructions, voice and tools win over the
  client's; turn detection is always the runtime's own voice activity
  detection (``server_vad``); the audio format is fixed when the call starts
  (see :func:`call_format`): asking for another one is an ``error``.
- ``conversation.item.truncate``: what the client played of an answer, used
  as the heard position at the next barge-in; answered by
  ``conversation.item.truncated``.
- ``input_audio_buffer.commit``: the runtime's VAD ends turns itself; during
  speech the answer is ``input_audio_buffer.committed`` for the item being
  spoken, otherwise an ``error`` (``input_audio_buffer_commit_empty``).
- ``input_audio_buffer.clear``: answered by ``input_audio_buffer.cleared``
  (audio is streamed as it arrives, so nothing already appended is recalled).
- ``conversation.item.create``: answered by ``conversation.item.created`` and
  logged (``realtime.item.create``: the item's id, kind, role, text, and
  whether it is ``typed`` text). A ``user`` message with ``input_text`` parts
  is typed text (:func:`typed_text`): as on OpenAI, where a text item is
  answered once the client asks, the text items created since the last
  ``response.create`` become the caller's turn at the next one (one
  :class:`CallerText`, at most :data:`MAX_TYPED_CHARS`). Other items are
  acknowledged only.
- ``response.create``: logged; hands over the typed text waiting, if any (the
  agent answers each spoken caller turn by itself).
- ``response.cancel``: the running response ends for the client at once
  (``response.done``, ``cancelled``, ``client_cancelled``, as OpenAI sends it)
  and its remaining audio is dropped; logged as ``realtime.response.cancel``,
  and :class:`CancelResponse` stops the provider's response (the supervisor
  clears and truncates it at the heard position, as for a barge-in). With no
  response in progress the answer is OpenAI's ``response_cancel_not_active``
  error.
- A malformed or unknown event (or a binary frame) is answered by an
  ``error`` event shaped as OpenAI's (``invalid_request_error``), logged as
  an ``error`` event and skipped; the call goes on, within the door's budget
  (:mod:`.frame_budget`): an event over the codec's ``MAX_CLIENT_EVENT_CHARS``
  closes with 1009, :data:`MAX_BAD_EVENTS_IN_A_ROW` unusable events in a row
  (or ``MAX_BAD_PER_CALL`` in the call) with 1008, and the supervisor is told
  (:class:`TransportFailed`).

Call -> client (``ShowEvent`` arrives in order with the audio):

- ``speech.started`` / ``speech.stopped`` -> ``input_audio_buffer.speech_started``
  / ``speech_stopped``;
- ``turn:user`` -> ``input_audio_buffer.committed``, ``conversation.item.created``
  (the user message with its transcript) and
  ``conversation.item.input_audio_transcription.completed`` (nothing for a
  ``typed`` turn: the client created that item itself);
- ``response.start`` -> ``response.created``, ``response.output_item.added``,
  ``conversation.item.created`` (the assistant message);
- :class:`PlayAudio` -> ``response.output_audio.delta`` (beta
  ``response.audio.delta``);
- ``turn:agent`` -> ``response.output_audio_transcript.delta`` and ``.done``;
- ``response.done`` -> ``response.output_audio.done``,
  ``response.output_item.done`` and ``response.done`` (``completed``, or
  ``cancelled`` / ``turn_detected`` after a barge-in).

Recording (``ctx.tape``, :mod:`.tape`): caller audio in the 20 ms frames it
is cut into, each ``response.output_audio.delta`` once sent, and each
:class:`ClearPlayback` (the client stops its player at a barge-in).

Tool calls run inside the runtime, so they are not shown as function calls
(a client would try to run them). :class:`MarkPlayback` is answered at once
(the client plays the audio itself); :class:`ClearPlayback` is answered with
the heard position the client reported by ``conversation.item.truncate``,
or else estimated as the audio's real-time duration since its first chunk
was sent (never more than was sent). :class:`EndCall` closes the socket once
the audio sent has had time to play.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
import trio

from switchboard.codecs import openai_realtime as wire
from switchboard.codecs.wire_text import quote

from .context import CallContext, EventSink
from .frame_budget import MAX_BAD_IN_A_ROW, FrameBudget
from .messages import (
    AudioChunk,
    CallerAudio,
    CallerHungUp,
    CallerText,
    CallEvent,
    CancelResponse,
    ClearPlayback,
    EndCall,
    MarkPlayback,
    PlayAudio,
    PlaybackCleared,
    PlaybackMarked,
    ShowEvent,
    ToSupervisor,
    ToTransport,
    TransportFailed,
)
from .realtime_session import format_name, requested_format, session_in_effect, wire_format
from .sockets import MessageSocket, close_reason

__all__ = ["MAX_BAD_EVENTS_IN_A_ROW", "MAX_TYPED_CHARS", "RealtimeTransport", "typed_text"]

log = structlog.get_logger("switchboard.realtime")

FRAME_MS: Final = 20
MAX_BAD_EVENTS_IN_A_ROW: Final = MAX_BAD_IN_A_ROW
MAX_HANGUP_WAIT_S: Final = 10.0
"""The longest EndCall waits for the client to play the audio already sent."""
MAX_TYPED_CHARS: Final = 4000
"""The longest typed caller turn (characters): the user text items waiting for a
``response.create``, joined. An item that would make it longer is refused with OpenAI's
``string_above_max_length`` error and not created."""

_ERROR_CODES: Final = {
    "invalid_json": "invalid_json",
    "not_an_object": "invalid_type",
    "missing_field": "missing_required_parameter",
    "bad_field": "invalid_value",
    "bad_base64": "invalid_value",
    "too_large": "invalid_value",
}
"""The codec's reasons as OpenAI's ``error.code`` values."""


@dataclass
class _Response:
    """One agent response as the client sees it."""

    item_id: str
    first_audio_s: float | None = None  # trio time its first audio was sent
    sent_ms: float = 0.0
    played_ms: float | None = None  # the client's conversation.item.truncate
    transcript: str | None = None
    closed: bool = False

    def heard_ms(self, now_s: float) -> float:
        if self.played_ms is not None:
            return min(self.played_ms, self.sent_ms)
        if self.first_audio_s is None:
            return 0.0
        return min(self.sent_ms, (now_s - self.first_audio_s) * 1000.0)

    def playout_end_s(self) -> float:
        start = self.first_audio_s if self.first_audio_s is not None else 0.0
        return start + self.sent_ms / 1000.0


class RealtimeTransport:
    """The caller's side of a call held by an OpenAI Realtime client.

    Args:
        ctx: the call; ``ctx.caller_format`` is the session's audio format
            (PCM16 24 kHz or G.711 mu-law 8 kHz).
        socket: the accepted WebSocket.
        inbox, to_supervisor, events: as for every transport (``run_call``).
        dialect: ``beta`` for a client that sent ``OpenAI-Beta: realtime=v1``.
        model: the model the client asked for, echoed in ``session.updated``.
        pending: client events already read (by the route, before the call
            started), handled first.
    """

    def __init__(
        self,
        ctx: CallContext,
        *,
        socket: MessageSocket,
        inbox: trio.MemoryReceiveChannel[ToTransport],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        events: EventSink,
        dialect: wire.Dialect = "ga",
        model: str = "switchboard",
        pending: Sequence[str | bytes] = (),
    ) -> None:
        self.ctx = ctx
        self._socket = socket
        self._inbox = inbox
        self._to_supervisor = to_supervisor
        self._replies = to_supervisor.clone()  # the command taker's (PlaybackMarked/Cleared)
        self._events = events
        self._dialect: wire.Dialect = dialect
        self._model = model
        self._pending = list(pending)
        self._format = wire_format(ctx.caller_format)
        self._bytes_per_ms = (
            ctx.caller_format.sample_rate
            * (2 if ctx.caller_format.encoding == "pcm16" else 1)
            / 1000.0
        )
        self._send_lock = trio.Lock()
        self._ids = itertools.count(1)
        self._input_ms = 0.0
        self._odd_byte = b""
        self._speech_item: str | None = None  # the user item being spoken
        self._committed: set[str] = set()  # user items already reported committed
        self._last_item: str | None = None
        self._responses: dict[str, _Response] = {}
        self._items: dict[str, str] = {}  # assistant item id -> response id
        self._playing: str | None = None  # response whose audio was sent last
        self._typed: list[str] = []  # user text items awaiting the client's response.create

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read)
                task_status.started()
                await self._take_commands()
                nursery.cancel_scope.cancel()  # the supervisor is done: so is the call
        except Exception as exc:
            self.ctx.fault.record(exc)
            raise
        finally:
            with trio.CancelScope(shield=True):
                await self._socket.close(*self.ctx.fault.close_frame())
                await self._replies.aclose()
                await self._events.aclose()

    # -- client -> call --------------------------------------------------------------

    async def _read(self) -> None:
        async with self._to_supervisor:
            try:
                budget = FrameBudget()
                while True:
                    text = self._pending.pop(0) if self._pending else await self._socket.receive()
                    if text is None:
                        break
                    unusable = await self._on_client_text(text)
                    if unusable is None:
                        budget.good()
                        continue
                    hang_up = budget.bad(*unusable)
                    if hang_up is not None:
                        await self._to_supervisor.send(
                            TransportFailed(hang_up.reason, hang_up.detail)
                        )
                        await self._socket.close(hang_up.code, hang_up.reason)
                        return
                await self._to_supervisor.send(CallerHungUp("client closed the connection"))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the supervisor has already ended the call

    async def _on_client_text(self, text: str | bytes) -> tuple[str, str] | None:
        """Handle one client event; ``(reason, detail)`` (logged as an ``error`` event)
        if it could not be understood."""
        if isinstance(text, bytes):
            problem = ("binary_frame", "events are JSON text frames, not binary")
            await self._events.emit("error", where="realtime.client", reason=problem[0])
            await self._error("invalid_type", problem[1])
            return problem
        try:
            event = wire.parse_client_event(text)
        except wire.RealtimeEventError as exc:
            await self._events.emit(
                "error", where="realtime.client", reason=exc.reason, detail=exc.detail
            )
            await self._error(_ERROR_CODES[exc.reason], exc.detail, client_event_id=_event_id(text))
            return exc.reason, exc.detail
        if isinstance(event, wire.UnknownEvent):
            name = quote(event.type, 80)
            await self._events.emit(
                "error", where="realtime.client", reason="unknown_event", detail=name
            )
            await self._error(
                "invalid_value",
                f"Invalid value: '{name}'. This server does not handle that event.",
                param="type",
                client_event_id=_event_id(text),
            )
            return "unknown_event", name
        return await self._handle_client_event(event)

    async def _handle_client_event(self, event: wire.ClientEvent) -> tuple[str, str] | None:
        if isinstance(event, wire.InputAudioBufferAppend):
            await self._forward_audio(event.audio)
        elif isinstance(event, wire.SessionUpdate):
            await self._on_session_update(event)
        elif isinstance(event, wire.ConversationItemTruncate):
            await self._on_truncate(event)
        elif isinstance(event, wire.InputAudioBufferCommit):
            await self._on_commit(event)
        elif isinstance(event, wire.InputAudioBufferClear):
            await self._send(wire.InputAudioBufferCleared())
        elif isinstance(event, wire.ConversationItemCreate):
            return await self._on_item_create(event)
        elif isinstance(event, wire.ResponseCreate):
            await self._events.emit("realtime.response.create")
            await self._send_typed()
        elif isinstance(event, wire.ResponseCancel):
            await self._on_cancel(event)
        return None

    async def _forward_audio(self, data: bytes) -> None:
        fmt = self.ctx.caller_format
        if fmt.encoding == "pcm16":
            data = self._odd_byte + data
            cut = len(data) - len(data) % 2
            data, self._odd_byte = data[:cut], data[cut:]
        step = int(self._bytes_per_ms * FRAME_MS)
        tape = self.ctx.tape
        for i in range(0, len(data), step):
            chunk = AudioChunk(data[i : i + step], fmt.encoding, fmt.sample_rate)
            tape.caller(chunk.data)
            await self._to_supervisor.send(CallerAudio(chunk, round(self._input_ms, 3)))
            self._input_ms += chunk.duration_ms

    async def _on_session_update(self, update: wire.SessionUpdate) -> None:
        requested = requested_format(update)
        mismatched = [
            f
            for f in (update.session.input_format, update.session.output_format)
            if f is not None and f != self._format
        ]
        if mismatched:
            await self._error(
                "invalid_value",
                f"The audio format is fixed for this call ({format_name(self._format)}); "
                f"set it in the first session.update. Asked for {format_name(mismatched[0])}.",
                param="session.audio.input.format",
                client_event_id=update.event_id or None,
            )
        ignored = [
            name
            for name, value in (
                ("instructions", update.session.instructions),
                ("tools", update.session.tools),
                ("voice", update.session.voice),
                ("turn_detection", update.session.turn_detection),
            )
            if value is not None
        ]
        await self._events.emit(
            "realtime.session.update",
            format=format_name(requested) if requested else None,
            ignored=ignored,
        )
        await self._send(wire.SessionUpdated(session=self._session()))

    def _session(self) -> wire.SessionConfig:
        return session_in_effect(
            self.ctx.agent,
            self._format,
            session_id=f"sess_{self.ctx.session_id.hex}",
            model=self._model,
        )

    async def _on_truncate(self, event: wire.ConversationItemTruncate) -> None:
        response_id = self._items.get(event.item_id)
        if response_id is None:
            await self._error(
                "invalid_value",
                f"No assistant item with id {event.item_id[:80]!r}.",
                param="item_id",
                client_event_id=event.event_id or None,
            )
            return
        response = self._responses[response_id]
        response.played_ms = float(event.audio_end_ms)
        await self._send(
            wire.ConversationItemTruncated(
                item_id=event.item_id,
                content_index=event.content_index,
                audio_end_ms=event.audio_end_ms,
            )
        )

    async def _on_commit(self, event: wire.InputAudioBufferCommit) -> None:
        item_id = self._speech_item
        if item_id is None:
            await self._error(
                "input_audio_buffer_commit_empty",
                "No caller speech to commit: the runtime's voice activity detection "
                "commits each turn itself.",
                client_event_id=event.event_id or None,
            )
            return
        await self._commit(item_id)

    async def _commit(self, item_id: str) -> None:
        if item_id in self._committed:
            return
        self._committed.add(item_id)
        await self._send(
            wire.InputAudioBufferCommitted(item_id=item_id, previous_item_id=self._last_item)
        )

    async def _on_item_create(self, event: wire.ConversationItemCreate) -> tuple[str, str] | None:
        item = event.item
        typed = typed_text(item)
        waiting = len("\n".join([*self._typed, typed])) if typed is not None else 0
        if waiting > MAX_TYPED_CHARS:
            detail = (
                f"{waiting} characters of user text before a response.create"
                f" (at most {MAX_TYPED_CHARS})"
            )
            await self._events.emit(
                "error", where="realtime.client", reason="text_too_long", detail=detail
            )
            await self._error(
                "string_above_max_length",
                f"Invalid 'item.content': {detail}.",
                param="item.content",
                client_event_id=event.event_id or None,
            )
            return "text_too_long", detail
        item_id = item.id or self._new_id("item")
        item = dataclasses.replace(item, id=item_id)
        text, role = "", None
        if isinstance(item, wire.MessageItem):
            item = dataclasses.replace(item, status="completed")
            text = " ".join(p.text or p.transcript or "" for p in item.content).strip()
            role = item.role
        await self._events.emit(
            "realtime.item.create",
            item_id=item_id,
            kind=type(item).__name__,
            role=role,
            text=text,
            typed=typed is not None,
        )
        await self._send(
            wire.ConversationItemCreated(
                item=item, previous_item_id=event.previous_item_id or self._last_item
            )
        )
        self._last_item = item_id
        if typed:
            self._typed.append(typed)
        return None

    async def _send_typed(self) -> None:
        """``response.create``: the user text items created since the last one are the
        caller's turn (:class:`CallerText`, one for all of them)."""
        if self._typed:
            text, self._typed = "\n".join(self._typed), []
            await self._to_supervisor.send(CallerText(text))

    async def _on_cancel(self, event: wire.ResponseCancel) -> None:
        open_ids = [rid for rid, r in self._responses.items() if not r.closed]
        response_id = event.response_id or (open_ids[-1] if open_ids else None)
        if response_id is None or response_id not in open_ids:
            await self._error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found.",
                client_event_id=event.event_id or None,
            )
            return
        await self._events.emit("realtime.response.cancel", response_id=response_id)
        await self._close_response(
            response_id, status="cancelled", reason="client_cancelled", keep_playing=True
        )
        await self._to_supervisor.send(CancelResponse())  # the provider's response stops too

    # -- call -> client --------------------------------------------------------------

    async def _take_commands(self) -> None:
        async with self._replies:
            async for command in self._inbox:
                if isinstance(command, PlayAudio):
                    await self._play(command)
                elif isinstance(command, ShowEvent):
                    await self._show(command.event)
                elif isinstance(command, MarkPlayback):
                    await self._reply(PlaybackMarked(command.name))
                elif isinstance(command, ClearPlayback):
                    await self._clear()
                elif isinstance(command, EndCall):
                    await self._hang_up(command.reason)

    async def _reply(self, message: ToSupervisor) -> None:
        try:
            await self._replies.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the supervisor is gone; the call is ending

    async def _play(self, command: PlayAudio) -> None:
        response = self._responses.get(command.response_id)
        if response is None:  # audio without its response.start: open the response here
            response = await self._open_response(command.response_id)
        if response.closed:
            return  # cancelled by the client: the rest is not sent
        if response.first_audio_s is None:
            response.first_audio_s = trio.current_time()
        response.sent_ms += command.chunk.duration_ms
        self._playing = command.response_id
        await self._send(
            wire.ResponseOutputAudioDelta(
                response_id=command.response_id, item_id=response.item_id, delta=command.chunk.data
            )
        )
        self.ctx.tape.agent(command.chunk.data)

    async def _clear(self) -> None:
        """Barge-in: the client stops playing itself; report what it heard."""
        response_id, self._playing = self._playing, None
        self.ctx.tape.agent_cleared()  # the client stops its player (OpenAI's barge-in rule)
        response = self._responses.get(response_id or "")
        now = trio.current_time()
        heard = response.heard_ms(now) if response else 0.0
        sent = response.sent_ms if response else 0.0
        await self._reply(PlaybackCleared(response_id, round(heard, 1), round(sent, 1)))

    async def _hang_up(self, reason: str) -> None:
        """Close once the audio sent has had time to play (bounded)."""
        ends = [r.playout_end_s() for r in self._responses.values() if r.first_audio_s is not None]
        remaining_s = max([0.0, *(end - trio.current_time() for end in ends)])
        await trio.sleep(min(remaining_s, MAX_HANGUP_WAIT_S))
        await self._events.emit("hangup", reason=reason)
        await self._socket.close(1000, close_reason(reason))

    async def _show(self, event: CallEvent) -> None:
        p = event.payload
        if event.type == "speech.started":
            self._speech_item = self._new_id("item")
            await self._send(
                wire.InputAudioBufferSpeechStarted(
                    audio_start_ms=_ms(p.get("audio_offset_ms")), item_id=self._speech_item
                )
            )
        elif event.type == "speech.stopped":
            if self._speech_item is None:
                self._speech_item = self._new_id("item")
            await self._send(
                wire.InputAudioBufferSpeechStopped(
                    audio_end_ms=_ms(p.get("audio_offset_ms")), item_id=self._speech_item
                )
            )
        elif event.type == "turn:user" and not p.get("typed"):  # typed: the client's own item
            await self._user_turn(str(p.get("text") or ""))
        elif event.type == "response.start":
            if str(p.get("response_id")) not in self._responses:
                await self._open_response(str(p.get("response_id")))
        elif event.type == "turn:agent":
            await self._agent_transcript(str(p.get("response_id")), str(p.get("text") or ""))
        elif event.type == "response.done":
            interrupted = bool(p.get("interrupted"))
            await self._close_response(
                str(p.get("response_id")),
                status="cancelled" if interrupted else "completed",
                reason="turn_detected" if interrupted else None,
            )
        # tool calls run in the runtime; failover and call.ending have no OpenAI event.

    async def _user_turn(self, text: str) -> None:
        item_id = self._speech_item or self._new_id("item")
        self._speech_item = None
        await self._commit(item_id)
        item = wire.MessageItem(
            role="user",
            id=item_id,
            status="completed",
            content=(wire.ContentPart(type="input_audio", transcript=text),),
        )
        await self._send(wire.ConversationItemCreated(item=item, previous_item_id=self._last_item))
        self._last_item = item_id
        await self._send(
            wire.InputAudioTranscriptionCompleted(item_id=item_id, content_index=0, transcript=text)
        )

    async def _open_response(self, response_id: str) -> _Response:
        response = _Response(item_id=self._new_id("item"))
        self._responses[response_id] = response
        self._items[response.item_id] = response_id
        item = wire.MessageItem(role="assistant", id=response.item_id, status="in_progress")
        await self._send(wire.ResponseCreated(response=wire.ResponseInfo(id=response_id)))
        await self._send(
            wire.ResponseOutputItemAdded(response_id=response_id, output_index=0, item=item)
        )
        await self._send(wire.ConversationItemCreated(item=item, previous_item_id=self._last_item))
        self._last_item = response.item_id
        return response

    async def _agent_transcript(self, response_id: str, text: str) -> None:
        response = self._responses.get(response_id)
        if response is None or response.closed or response.transcript is not None:
            return
        response.transcript = text
        rid, item_id = response_id, response.item_id
        await self._send(
            wire.ResponseOutputAudioTranscriptDelta(response_id=rid, item_id=item_id, delta=text)
        )
        await self._send(
            wire.ResponseOutputAudioTranscriptDone(
                response_id=rid, item_id=item_id, transcript=text
            )
        )

    async def _close_response(
        self, response_id: str, *, status: str, reason: str | None, keep_playing: bool = False
    ) -> None:
        """Send the response's closing events (once). ``keep_playing``: it stays the
        response whose audio was sent last, for the heard position of the clear that
        follows a client's cancel."""
        response = self._responses.get(response_id)
        if response is None or response.closed:
            return
        response.closed = True
        if self._playing == response_id and not keep_playing:
            self._playing = None
        rid, item_id = response_id, response.item_id
        await self._send(wire.ResponseOutputAudioDone(response_id=rid, item_id=item_id))
        if response.transcript is None:
            await self._send(
                wire.ResponseOutputAudioTranscriptDone(
                    response_id=rid, item_id=item_id, transcript=""
                )
            )
        item = wire.MessageItem(
            role="assistant",
            id=response.item_id,
            status="completed" if status == "completed" else "incomplete",
            content=(wire.ContentPart(type="output_audio", transcript=response.transcript or ""),),
        )
        await self._send(
            wire.ResponseOutputItemDone(response_id=response_id, output_index=0, item=item)
        )
        await self._send(
            wire.ResponseDone(
                response=wire.ResponseInfo(
                    id=response_id, status=status, status_reason=reason, output=(item,)
                )
            )
        )

    # -- sending ---------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.ctx.session_id.hex[:12]}{next(self._ids):06d}"

    async def _error(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        client_event_id: str | None = None,
    ) -> None:
        await self._send(
            wire.ErrorEvent(
                error_type="invalid_request_error",
                code=code,
                message=message,
                param=param,
                client_event_id=client_event_id,
            )
        )

    async def _send(self, event: wire.ServerEvent) -> None:
        if not isinstance(event, wire.UnknownEvent):
            event = dataclasses.replace(event, event_id=self._new_id("event"))
        text = wire.encode_server_event(event, self._dialect)
        async with self._send_lock:
            await self._socket.send(text)


def typed_text(item: wire.Item) -> str | None:
    """The text a ``conversation.item.create`` item types for the caller: a ``user``
    message's ``input_text`` parts joined by spaces, stripped (None for any other item,
    or a user message with no text, such as ``input_audio`` alone)."""
    if not isinstance(item, wire.MessageItem) or item.role != "user":
        return None
    text = " ".join(p.text or "" for p in item.content if p.type == "input_text").strip()
    return text or None


def _ms(value: Any) -> int:
    return round(float(value)) if isinstance(value, int | float) else 0


def _event_id(text: str | bytes) -> str | None:
    """The ``event_id`` of a client event that failed to parse, if one can be read."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = data.get("event_id") if isinstance(data, dict) else None
    return value[:200] if isinstance(value, str) else None
