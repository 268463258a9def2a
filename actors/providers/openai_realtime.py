"""The ``openai-realtime`` provider: a call's conversation over an OpenAI Realtime WebSocket.

Wire: the events of :mod:`switchboard.codecs.openai_realtime` (OpenAI API
reference, "Realtime"), on ``<openai_realtime_url>?model=<model>`` with
``Authorization: Bearer $OPENAI_API_KEY`` (no header when no key is set: a
fake or a self-hosted endpoint).

Audio: a phone call's G.711 mu-law 8 kHz passes through untouched
(``audio/pcmu`` both ways); any other caller format is sent as PCM16 24 kHz
(``audio/pcm``), resampled only when the caller's rate differs.

One *answer* per caller turn: OpenAI ends a response that calls a function
and answers the function's output in a new response. The adapter presents
both as one answer under the first response's id (one
:class:`ResponseStarted`, one :class:`ResponseDone`, the transcripts joined),
so a turn with a tool call counts once and a tool's deferred action follows
the answer the caller hears.

Typed text (:class:`CallerText`) is a ``user`` message item of ``input_text``
followed by ``response.create``, sent once no response is in progress.

Failures (:class:`ProviderFailed`): a handshake refused with 5xx is
``http_5xx``, with another status ``error_event`` (401: a bad key); an
``error`` event of type ``server_error`` is ``error_event`` (client errors,
such as truncating an item that is gone, are logged and ignored); the
connection closing or never opening is ``disconnect`` (``connect_timeout``
when the handshake timed out).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import structlog
import trio
import trio_websocket

from switchboard.codecs import openai_realtime as wire
from switchboard.orchestrator.agents import AgentSpec

from ..audio_convert import ToFormat
from ..context import AudioFormat, EventSink
from ..messages import (
    UNHEARD_NOTE,
    AgentAudio,
    AgentSaid,
    AgentTranscript,
    AudioChunk,
    CallerAudio,
    CallerSaid,
    CallerText,
    CallerTranscript,
    CallerUnheard,
    ConversationItem,
    FailureKind,
    Outbox,
    ProviderFailed,
    ProviderReady,
    RespondNow,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    ToolRan,
    ToolResult,
    ToProvider,
    TruncateResponse,
    last_unheard,
)
from . import ProviderSetup

__all__ = ["OpenAIRealtimeProvider", "build", "session_config"]

log = structlog.get_logger("switchboard.openai_realtime")

MODE: Final = "openai-realtime"
TRANSCRIPTION_MODEL: Final = "gpt-4o-mini-transcribe"
GREETING_METADATA: Final = {"switchboard": "greeting"}
_QUIET_EVENTS: Final = (
    wire.ResponseOutputAudioDelta,
    wire.ResponseOutputAudioTranscriptDelta,
    wire.ResponseFunctionCallArgumentsDelta,
)


def build(setup: ProviderSetup) -> OpenAIRealtimeProvider:
    """The ``openai-realtime`` provider actor for one call."""
    return OpenAIRealtimeProvider(setup)


def session_config(agent: AgentSpec, fmt: wire.WireAudioFormat) -> wire.SessionConfig:
    """The ``session.update`` for ``agent`` with audio in ``fmt`` both ways.

    Tools: :meth:`AgentSpec.function_tools` (the builtins, then the agent's own).
    """
    turn = agent.option(MODE, "turn_detection")
    return wire.SessionConfig(
        instructions=agent.instructions or None,
        voice=agent.option(MODE, "voice"),
        input_format=fmt,
        output_format=fmt,
        turn_detection=wire.TurnDetection(
            type="semantic_vad" if turn == "semantic_vad" else "server_vad",
            create_response=True,
            interrupt_response=True,
        ),
        transcription_model=TRANSCRIPTION_MODEL,
        tools=tuple(
            wire.FunctionTool(
                name=t.name, description=t.description, parameters=t.parameters_json()
            )
            for t in agent.function_tools()
        ),
        tool_choice="auto",
        output_modalities=("audio",),
    )


def conversation_items(conversation: tuple[ConversationItem, ...]) -> list[wire.Item]:
    """The conversation so far as Realtime items (user/assistant text, function calls)."""
    items: list[wire.Item] = []
    for said in conversation:
        if isinstance(said, CallerSaid | CallerUnheard):
            text = said.text if isinstance(said, CallerSaid) else UNHEARD_NOTE
            part = wire.ContentPart(type="input_text", text=text)
            items.append(wire.MessageItem(role="user", content=(part,)))
        elif isinstance(said, AgentSaid):
            part = wire.ContentPart(type="output_text", text=said.text)
            items.append(wire.MessageItem(role="assistant", content=(part,)))
        elif isinstance(said, ToolRan):
            arguments = json.dumps(dict(said.arguments))
            items.append(
                wire.FunctionCallItem(call_id=said.call_id, name=said.name, arguments=arguments)
            )
            items.append(wire.FunctionCallOutputItem(call_id=said.call_id, output=said.output))
    return items


@dataclass
class _Answer:
    """One answer to a caller turn: one or more OpenAI responses (tool follow-ups)."""

    id: str  # the first response's id: the answer's id for the runtime
    greeting: bool
    running: str | None = None  # the OpenAI response in progress
    items: list[list[Any]] = field(default_factory=list)  # [item_id, start_ms, duration_ms]
    transcripts: dict[str, str] = field(default_factory=dict)  # item_id -> text
    pending_calls: set[str] = field(default_factory=set)
    called: bool = False  # the running response called a function
    truncated: bool = False
    finished: bool = False

    def add_audio(self, item_id: str, ms: float) -> None:
        if not self.items or self.items[-1][0] != item_id:
            start = self.items[-1][1] + self.items[-1][2] if self.items else 0.0
            self.items.append([item_id, start, 0.0])
        self.items[-1][2] += ms


class OpenAIRealtimeProvider:
    """The provider actor (see the module docstring); ``await provider(inbox, outbox, events)``."""

    name = MODE

    def __init__(self, setup: ProviderSetup) -> None:
        self._setup = setup
        agent = setup.ctx.agent
        fmt = setup.ctx.caller_format
        self._passthrough = fmt.encoding == "pcmu" and fmt.sample_rate == 8000
        self._wire_format = wire.PCMU_8K if self._passthrough else wire.PCM16_24K
        self._caller_format = fmt
        wire_format = AudioFormat(
            "pcmu" if self._passthrough else "pcm16", self._wire_format.sample_rate
        )
        self._wire_audio = wire_format
        self._to_wire = ToFormat(wire_format)  # G.711 passes through untouched
        self._from_wire = ToFormat(fmt)
        self._model = agent.option(MODE, "model")
        self._answers: OrderedDict[str, _Answer] = OrderedDict()  # answer id -> answer
        self._by_response: dict[str, _Answer] = {}  # OpenAI response id -> answer
        self._continuing: _Answer | None = None  # awaits the follow-up's response.created
        self._call_names: dict[str, str] = {}
        self._speech: dict[str, tuple[float, float]] = {}  # item_id -> start, end (caller ms)
        self._audio_base_ms: float | None = None
        self._ready = False
        self._response_owed = False  # a typed turn's response.create waits for response.done
        self._tape, self._source = setup.ctx.tape, setup.source

    @property
    def url(self) -> str:
        base = self._setup.endpoints.openai_realtime_url
        return f"{base}{'&' if '?' in base else '?'}model={quote(self._model)}"

    async def __call__(
        self,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        outbox: Outbox,
        events: EventSink,
    ) -> None:
        key = self._setup.endpoints.openai_api_key
        headers = [("Authorization", f"Bearer {key}")] if key else []
        failure: ProviderFailed | None = None
        try:
            async with self._setup.connect(self.url, headers) as ws:
                await self._converse(ws, inbox, outbox, events)
        except trio_websocket.ConnectionRejected as exc:
            status = exc.status_code or 0
            kind: FailureKind = "http_5xx" if 500 <= status <= 599 else "error_event"
            failure = ProviderFailed(self.name, kind, f"handshake refused: HTTP {status}")
        except trio_websocket.ConnectionTimeout as exc:
            failure = ProviderFailed(self.name, "connect_timeout", f"handshake timed out: {exc}")
        except (trio_websocket.HandshakeError, OSError) as exc:
            failure = ProviderFailed(self.name, "disconnect", f"cannot connect: {exc!r}")
        if failure is not None:
            await outbox.send(failure)

    # -- the session -------------------------------------------------------------------

    async def _converse(
        self,
        ws: trio_websocket.WebSocketConnection,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        outbox: Outbox,
        events: EventSink,
    ) -> None:
        async with trio.open_nursery() as nursery:
            await self._start_session(ws)

            async def forward_then_stop() -> None:
                await self._forward(ws, inbox, outbox, events)
                nursery.cancel_scope.cancel()  # the call is over

            nursery.start_soon(forward_then_stop)
            failure = await self._read(ws, outbox)
            if failure is not None:
                await outbox.send(failure)
            nursery.cancel_scope.cancel()

    async def _send(self, ws: trio_websocket.WebSocketConnection, event: wire.ClientEvent) -> None:
        await ws.send_message(wire.encode_client_event(event))

    async def _start_session(self, ws: trio_websocket.WebSocketConnection) -> None:
        setup = self._setup
        agent = setup.ctx.agent
        await self._send(ws, wire.SessionUpdate(session=session_config(agent, self._wire_format)))
        for item in conversation_items(setup.conversation):
            await self._send(ws, wire.ConversationItemCreate(item=item))
        if setup.greet:
            instructions = (
                f"Greet the caller by saying exactly this, and nothing else: {setup.ctx.greeting}"
            )
            params = wire.ResponseParams(instructions=instructions, metadata=GREETING_METADATA)
            await self._send(ws, wire.ResponseCreate(response=params))
        elif setup.respond_now and (unheard := last_unheard(setup.conversation)) is not None:
            instructions = (
                "The caller's last words were lost on the line. Ask them to say it again "
                f"by saying exactly this, and nothing else: {unheard.repeat}"
            )
            params = wire.ResponseParams(instructions=instructions)
            await self._send(ws, wire.ResponseCreate(response=params))
        elif setup.respond_now:
            await self._send(ws, wire.ResponseCreate())

    # -- runtime -> OpenAI ---------------------------------------------------------------

    async def _forward(
        self,
        ws: trio_websocket.WebSocketConnection,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        outbox: Outbox,
        events: EventSink,
    ) -> None:
        try:
            async for message in inbox:
                if isinstance(message, CallerAudio):
                    if self._audio_base_ms is None:
                        self._audio_base_ms = message.offset_ms
                    audio = self._encode_caller(message.chunk)
                    if audio:
                        await self._send(ws, wire.InputAudioBufferAppend(audio=audio))
                elif isinstance(message, ToolResult):
                    await self._on_tool_result(ws, message)
                elif isinstance(message, TruncateResponse):
                    await self._on_truncate(ws, message, outbox, events)
                elif isinstance(message, RespondNow):
                    part = wire.ContentPart(type="input_text", text=message.note)
                    item = wire.MessageItem(role="system", content=(part,))
                    await self._send(ws, wire.ConversationItemCreate(item=item))
                    await self._send(ws, wire.ResponseCreate())
                elif isinstance(message, CallerText):
                    await self._on_caller_text(ws, message)
        except trio_websocket.ConnectionClosed:
            pass  # the reader reports it

    async def _on_caller_text(
        self, ws: trio_websocket.WebSocketConnection, message: CallerText
    ) -> None:
        """A typed caller turn: a ``user`` message of ``input_text``, then ``response.create``
        (OpenAI answers a text item only when asked). While a response is still in
        progress (one the barge-in that came first is cancelling) the request waits for
        its ``response.done``: OpenAI refuses a second active response."""
        part = wire.ContentPart(type="input_text", text=message.text)
        item = wire.MessageItem(role="user", content=(part,))
        await self._send(ws, wire.ConversationItemCreate(item=item))
        self._response_owed = True
        await self._request_owed(ws)

    async def _request_owed(self, ws: trio_websocket.WebSocketConnection) -> None:
        if self._response_owed and not self._by_response and self._continuing is None:
            self._response_owed = False
            await self._send(ws, wire.ResponseCreate())

    def _encode_caller(self, chunk: AudioChunk) -> bytes:
        converted = self._to_wire.convert(chunk)
        return converted.data if converted is not None else b""

    async def _on_tool_result(
        self, ws: trio_websocket.WebSocketConnection, result: ToolResult
    ) -> None:
        await self._send(
            ws,
            wire.ConversationItemCreate(
                item=wire.FunctionCallOutputItem(call_id=result.call_id, output=result.output)
            ),
        )
        answer = self._answers.get(result.response_id)
        if answer is None or answer.finished:
            return  # interrupted meanwhile: the output is recorded, nothing more to say
        answer.pending_calls.discard(result.call_id)
        if not answer.pending_calls and answer.running is None:
            await self._follow_up(ws, answer)

    async def _follow_up(self, ws: trio_websocket.WebSocketConnection, answer: _Answer) -> None:
        """Ask for the answer's continuation now that every function output is in."""
        answer.called = False
        self._continuing = answer
        await self._send(ws, wire.ResponseCreate())

    async def _on_truncate(
        self,
        ws: trio_websocket.WebSocketConnection,
        message: TruncateResponse,
        outbox: Outbox,
        events: EventSink,
    ) -> None:
        answer = self._answers.get(message.response_id)
        if answer is None:
            log.info("truncate of an unknown response", response_id=message.response_id)
            return
        answer.truncated = True
        heard = max(0.0, message.heard_ms)
        for item_id, start_ms, duration_ms in answer.items:
            if start_ms + duration_ms <= heard:
                continue  # heard in full
            audio_end_ms = max(0, math.floor(heard - start_ms))
            await self._send(
                ws,
                wire.ConversationItemTruncate(
                    item_id=item_id, content_index=0, audio_end_ms=audio_end_ms
                ),
            )
            await events.emit(
                "provider.truncated",
                response_id=answer.id,
                item_id=item_id,
                audio_end_ms=audio_end_ms,
            )
        if answer.running is not None:
            await self._send(ws, wire.ResponseCancel(response_id=answer.running))
        elif not answer.finished:
            await self._finish(answer, outbox, interrupted=True)  # between tool and follow-up

    # -- OpenAI -> runtime ---------------------------------------------------------------

    async def _read(
        self, ws: trio_websocket.WebSocketConnection, outbox: Outbox
    ) -> ProviderFailed | None:
        """Handle server events until the connection closes or fails; the failure, if any."""
        while True:
            try:
                text = await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                why = f"{exc.reason.code} {exc.reason.reason or ''}" if exc.reason else "abruptly"
                return ProviderFailed(self.name, "disconnect", f"connection closed: {why}".strip())
            self._tape.provider(self._source, text)
            try:
                event = wire.parse_server_event(text)
            except wire.RealtimeEventError as exc:
                log.warning("unreadable server event", error=str(exc))
                continue
            if not isinstance(event, _QUIET_EVENTS):
                log.debug("openai event", type=_event_type(event))
            if isinstance(event, wire.ErrorEvent):
                if event.error_type == "server_error":
                    detail = f"{event.error_type}: {event.code or ''} {event.message}"
                    return ProviderFailed(self.name, "error_event", detail)
                log.warning(
                    "openai client error",
                    error_type=event.error_type,
                    code=event.code,
                    message=event.message,
                )
                continue
            try:
                await self._on_event(ws, event, outbox)
            except trio_websocket.ConnectionClosed as exc:  # while asking for a follow-up
                return ProviderFailed(self.name, "disconnect", f"connection closed: {exc}")

    async def _on_event(
        self,
        ws: trio_websocket.WebSocketConnection,
        event: wire.ServerEvent,
        outbox: Outbox,
    ) -> None:
        if isinstance(event, wire.ResponseOutputAudioDelta):
            answer = self._by_response.get(event.response_id)
            if answer is None or answer.truncated:
                return
            answer.add_audio(
                event.item_id, 1000.0 * self._samples(event.delta) / self._wire_format.sample_rate
            )
            chunk = self._decode_agent(event.delta)
            if chunk is not None and chunk.data:
                await outbox.send(AgentAudio(chunk, answer.id))
        elif isinstance(event, wire.ResponseOutputAudioTranscriptDelta):
            answer = self._by_response.get(event.response_id)
            if answer is not None:
                answer.transcripts[event.item_id] = (
                    answer.transcripts.get(event.item_id, "") + event.delta
                )
        elif isinstance(event, wire.ResponseOutputAudioTranscriptDone):
            answer = self._by_response.get(event.response_id)
            if answer is not None:
                answer.transcripts[event.item_id] = event.transcript
        elif isinstance(event, wire.ResponseCreated):
            await self._on_response_created(event.response, outbox)
        elif isinstance(event, wire.ResponseOutputItemAdded):
            if isinstance(event.item, wire.FunctionCallItem):
                self._call_names[event.item.call_id] = event.item.name
        elif isinstance(event, wire.ResponseFunctionCallArgumentsDone):
            await self._on_function_call(event, outbox)
        elif isinstance(event, wire.ResponseDone):
            await self._on_response_done(ws, event.response, outbox)
        elif isinstance(event, wire.InputAudioBufferSpeechStarted):
            start = self._caller_ms(event.audio_start_ms)
            self._speech[event.item_id] = (start, start)
            await outbox.send(SpeechStarted(start))
        elif isinstance(event, wire.InputAudioBufferSpeechStopped):
            end = self._caller_ms(event.audio_end_ms)
            self._speech[event.item_id] = (self._speech.get(event.item_id, (end, end))[0], end)
            await outbox.send(SpeechStopped(end))
        elif isinstance(event, wire.InputAudioTranscriptionCompleted):
            start, end = self._speech.pop(event.item_id, (0.0, 0.0))
            await outbox.send(CallerTranscript(event.transcript.strip(), start, end))
        elif isinstance(event, wire.SessionUpdated) and not self._ready:
            self._ready = True
            await outbox.send(ProviderReady(self.name))

    def _caller_ms(self, audio_ms: int) -> float:
        return (self._audio_base_ms or 0.0) + audio_ms

    def _samples(self, audio: bytes) -> int:
        return len(audio) if self._passthrough else len(audio) // 2

    def _decode_agent(self, audio: bytes) -> AudioChunk | None:
        if self._wire_audio.encoding == "pcm16":
            audio = audio[: len(audio) // 2 * 2]
        wire_chunk = AudioChunk(audio, self._wire_audio.encoding, self._wire_audio.sample_rate)
        return self._from_wire.convert(wire_chunk)

    async def _on_response_created(self, response: wire.ResponseInfo, outbox: Outbox) -> None:
        answer = self._continuing
        self._continuing = None
        if answer is None or answer.finished:
            greeting = dict(response.metadata or {}) == GREETING_METADATA
            answer = _Answer(response.id, greeting)
            self._remember(answer)
            await outbox.send(ResponseStarted(answer.id, greeting=greeting))
        answer.running = response.id
        self._by_response[response.id] = answer

    def _remember(self, answer: _Answer) -> None:
        self._answers[answer.id] = answer
        while len(self._answers) > 16:  # truncation only concerns the last few answers
            self._answers.popitem(last=False)

    async def _on_function_call(
        self,
        event: wire.ResponseFunctionCallArgumentsDone,
        outbox: Outbox,
    ) -> None:
        answer = self._by_response.get(event.response_id)
        if answer is None:
            return
        name = event.name or self._call_names.get(event.call_id, "")
        answer.pending_calls.add(event.call_id)
        answer.called = True
        await outbox.send(
            ToolCallRequested(event.call_id, name, _arguments(event.arguments), answer.id)
        )

    async def _on_response_done(
        self,
        ws: trio_websocket.WebSocketConnection,
        response: wire.ResponseInfo,
        outbox: Outbox,
    ) -> None:
        answer = self._by_response.pop(response.id, None)
        if answer is None:
            await self._request_owed(ws)
            return
        answer.running = None
        if response.status == "cancelled" or answer.truncated:
            if not answer.finished:
                await self._finish(answer, outbox, interrupted=True)
        elif answer.called and response.status == "completed":
            if not answer.pending_calls:
                await self._follow_up(ws, answer)  # every result came in already
        else:
            await self._finish(answer, outbox, interrupted=False)
        await self._request_owed(ws)

    async def _finish(self, answer: _Answer, outbox: Outbox, *, interrupted: bool) -> None:
        answer.finished = True
        if not answer.truncated:
            tail = self._from_wire.flush()
            if tail is not None:
                await outbox.send(AgentAudio(tail, answer.id))
        text = " ".join(t.strip() for t in answer.transcripts.values() if t.strip())
        if text:
            await outbox.send(AgentTranscript(text, answer.id))
        await outbox.send(ResponseDone(answer.id, interrupted=interrupted))


def _arguments(text: str) -> Mapping[str, Any]:
    """A function call's JSON arguments as a mapping (``{}`` for blank or unusable text)."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        log.warning("function call arguments are not JSON", arguments=text[:200])
        return {}
    return value if isinstance(value, dict) else {}


def _event_type(event: wire.ServerEvent) -> str:
    return event.type if isinstance(event, wire.UnknownEvent) else type(event).__name__
