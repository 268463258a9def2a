"""The ``gemini-live`` provider: Google's Gemini Live API over one WebSocket per session.

Wire: :mod:`switchboard.codecs.gemini_live` (``BidiGenerateContent``). The
adapter connects to ``endpoints.gemini_live_url`` (``?key=GEMINI_API_KEY``
when a key is set; the URL is never logged), sends ``setup`` (model, audio
responses, voice, system instruction, function declarations, input and
output transcription, session resumption) and waits for ``setupComplete``.

Audio is converted once at this edge: caller audio from the call's format
(phone: G.711 mu-law 8 kHz) to PCM16 16 kHz ``realtimeInput``; the model's
PCM16 24 kHz to the call's format.

Mapping to the supervisor's messages:

- the first model output of a turn -> :class:`ResponseStarted` (our ids:
  ``greeting``, then ``gemini_1``, ``gemini_2``, ...), preceded by the
  caller's :class:`CallerTranscript` (``inputTranscription`` pieces joined;
  Gemini gives no timings, so ``start_ms``/``end_ms`` are the caller-audio
  positions at the end of the previous answer and at the start of this one);
- audio -> :class:`AgentAudio`; ``outputTranscription`` pieces ->
  one :class:`AgentTranscript` at ``turnComplete``, then :class:`ResponseDone`;
- ``inputTranscription`` (sent while the caller speaks; Gemini Live reports no
  speech events) -> :class:`SpeechHeard` per piece, which keeps the call's
  idle timer from running out;
- ``interrupted`` (Gemini's own VAD heard the caller over the answer: the
  barge-in signal) -> :class:`SpeechStarted` and ``ResponseDone(interrupted=True)``;
- ``toolCall`` -> :class:`ToolCallRequested` per function call;
  :class:`ToolResult` -> ``toolResponse`` (``{"output": ...}`` or
  ``{"error": ...}``). A turn waiting on a tool stays open until the model's
  ``turnComplete`` after the result.

Barge-in: Gemini has no truncate. On :class:`TruncateResponse` the adapter
cuts its own record of the answer (:attr:`GeminiLiveProvider.conversation`)
to the part heard (the transcript shortened in proportion to ``heard_ms``),
stops forwarding the answer if it is still running, and emits
``provider.truncated`` (``response_id``, ``heard_ms``). The model's own
context keeps what it generated.

``goAway``: the adapter opens a second connection with the latest
``sessionResumptionUpdate`` handle before the server closes the first, keeps
caller audio in a bounded buffer during the swap, sends it to the new
connection in order, closes the old one and emits ``provider.resumed``.

Failures (:class:`ProviderFailed`, then the adapter returns): a 5xx answer
to the handshake -> ``http_5xx`` (another refusal -> ``error_event``); the
server closing with an error code (1007, 1008, 1011, ...) or a reason ->
``error_event``; the connection lost, or closed without a reason ->
``disconnect``; no ``setupComplete`` within :data:`CONNECT_TIMEOUT_S` ->
``connect_timeout``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import count
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode

import structlog
import trio
import trio_websocket

from switchboard.codecs import gemini_live as wire

from ..audio_convert import ToFormat
from ..context import AudioFormat, CallContext, EventSink
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
    ProviderOutput,
    ProviderReady,
    RespondNow,
    ResponseDone,
    ResponseStarted,
    SpeechHeard,
    SpeechStarted,
    ToolCallRequested,
    ToolRan,
    ToolResult,
    ToProvider,
    TruncateResponse,
    last_unheard,
)
from ..pipeline.sentences import heard_text

if TYPE_CHECKING:
    from . import ProviderSetup

log = structlog.get_logger("switchboard.gemini_live")

MODE: Final = "gemini-live"
CONNECT_TIMEOUT_S: Final = 10.0
SWAP_BUFFER_MS: Final = 10_000.0
"""Caller audio kept during a goAway swap (older audio is dropped beyond this)."""
ERROR_CLOSE_CODES: Final = frozenset({1002, 1003, 1007, 1008, 1009, 1010, 1011, 1013, 1014})


@dataclass(frozen=True)
class _Failure:
    kind: FailureKind
    detail: str


@dataclass(eq=False)
class _Connection:
    number: int
    ws: trio_websocket.WebSocketConnection
    source: str  # the connection's name on the tape
    going_away: bool = False
    retired: bool = False


@dataclass(eq=False)
class _Response:
    id: str
    greeting: bool
    to_caller: ToFormat
    transcript: list[str] = field(default_factory=list)
    audio_ms: float = 0.0
    stopped: bool = False  # interrupted or truncated: its output is dropped
    tools_pending: set[str] = field(default_factory=set)


class GeminiLiveProvider:
    """One call's Gemini Live session (see the module docstring)."""

    name = MODE

    def __init__(self, setup: ProviderSetup) -> None:
        self.ctx: CallContext = setup.ctx
        self._setup = setup
        self.conversation: list[ConversationItem] = list(setup.conversation)
        self._ids = count(1)
        self._numbers = count(1)
        self._to_model = ToFormat(AudioFormat("pcm16", wire.INPUT_SAMPLE_RATE))
        self._conn: _Connection | None = None
        self._handle: str | None = None
        self._swap_buffer: deque[bytes] | None = None  # not None while swapping
        self._swap_buffer_ms = 0.0
        self._response: _Response | None = None
        self._responses: dict[str, _Response] = {}
        self._greeting_pending = False
        self._caller_text: list[str] = []
        self._caller_ms = 0.0  # end of the caller audio received so far
        self._utterance_start_ms = 0.0
        self._calls: dict[str, wire.FunctionCall] = {}  # awaiting a result, by call id
        self._said_index: dict[str, int] = {}  # response id -> its AgentSaid in conversation
        self._outbox: Outbox | None = None
        self._events: EventSink | None = None
        self._nursery: trio.Nursery | None = None
        self._tape = setup.ctx.tape

    # -- the actor ---------------------------------------------------------------

    async def __call__(
        self,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        outbox: Outbox,
        events: EventSink,
    ) -> None:
        self._outbox, self._events = outbox, events
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._conn = await nursery.start(self._run_connection, None)
            await outbox.send(ProviderReady(self.name))
            await self._seed(self._conn)
            async with inbox:
                async for message in inbox:
                    await self._handle_inbox(message)
            nursery.cancel_scope.cancel()

    def _url(self) -> str:
        url = self._setup.endpoints.gemini_live_url
        key = self._setup.endpoints.gemini_api_key
        if not key:
            return url
        return url + ("&" if "?" in url else "?") + urlencode({"key": key})

    def _setup_message(self, handle: str | None) -> wire.Setup:
        agent = self.ctx.agent
        tools = [
            wire.FunctionDeclaration(t.name, t.description, t.parameters_json())
            for t in agent.function_tools()
        ]
        return wire.Setup(
            model=agent.option(MODE, "model"),
            system_instruction=agent.instructions,
            voice=agent.option(MODE, "voice") or None,
            language=agent.option(MODE, "language") or None,
            tools=tuple(tools),
            resume_handle=handle,
        )

    async def _run_connection(
        self,
        handle: str | None,
        *,
        task_status: trio.TaskStatus[_Connection] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open one connection, set it up, ``started()`` with it, then read it to its end.

        A failure is reported with :meth:`_fail` before the connection is
        closed (a close handshake may take a while), unless the connection
        was being replaced; it ends the whole provider.
        """
        conn: _Connection | None = None
        failure: _Failure | None = None
        number = next(self._numbers)
        source = self._setup.source if number == 1 else f"{self._setup.source}/conn{number}"
        timeout = _Failure("connect_timeout", f"no setupComplete within {CONNECT_TIMEOUT_S:g} s")
        # A watchdog on the handshake, then one on the setup (inside the connection, so
        # that a timeout is reported before the close handshake).
        handshake = trio.CancelScope(deadline=trio.current_time() + CONNECT_TIMEOUT_S)
        try:
            with handshake:
                async with self._setup.connect(self._url(), []) as ws:
                    deadline, handshake.deadline = handshake.deadline, math.inf
                    try:
                        with trio.move_on_at(deadline) as setting_up:
                            await ws.send_message(wire.encode_client(self._setup_message(handle)))
                            await _setup_complete(ws, partial(self._tape.provider, source))
                        if setting_up.cancelled_caught:
                            failure = timeout
                        else:
                            conn = _Connection(number, ws, source)
                            task_status.started(conn)
                            await self._read(conn)
                    except trio_websocket.ConnectionClosed as exc:
                        if conn is None or not (conn.retired or conn.going_away):
                            failure = _closed(exc.reason)
                    except wire.GeminiLiveError as exc:
                        failure = _Failure("error_event", f"unreadable answer to setup: {exc}")
                    if failure is not None:  # reported before the close handshake
                        await self._fail(failure)
        except BaseException as exc:  # mapped to a failure, or re-raised
            failure = _connect_failure(exc)
            await self._fail(failure)
        if handshake.cancelled_caught:
            await self._fail(timeout)
        if conn is None:
            await trio.sleep_forever()  # cancelled at once by _fail: start() never returns

    async def _fail(self, failure: _Failure) -> None:
        assert self._outbox is not None and self._events is not None
        log.warning("gemini live failed", kind=failure.kind, detail=failure.detail)
        with trio.CancelScope(shield=True):
            try:
                await self._outbox.send(ProviderFailed(self.name, failure.kind, failure.detail))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _send(self, message: wire.ClientMessage, conn: _Connection | None = None) -> None:
        conn = conn or self._conn
        assert conn is not None
        try:
            await conn.ws.send_message(wire.encode_client(message))
        except trio_websocket.ConnectionClosed:
            pass  # the reader reports the close

    # -- what the runtime sends ------------------------------------------------------

    async def _seed(self, conn: _Connection) -> None:
        """Give the model the conversation so far, the greeting request, or both."""
        turns = [t for item in self._setup.conversation if (t := _as_turn(item)) is not None]
        greet = self._setup.greet
        if greet:
            self._greeting_pending = True
            turns.append(
                wire.ContentTurn(
                    "user",
                    "The caller has just been connected. Greet them by saying exactly: "
                    + self.ctx.greeting,
                )
            )
        unheard = last_unheard(self._setup.conversation)
        if self._setup.respond_now and unheard is not None and not greet:
            turns[-1] = wire.ContentTurn(  # the caller's lost turn, and what to say to it
                "user",
                f"{UNHEARD_NOTE} Ask them to say it again by saying exactly: {unheard.repeat}",
            )
        if turns:
            complete = greet or self._setup.respond_now
            await self._send(wire.ClientContent(tuple(turns), turn_complete=complete), conn)

    async def _handle_inbox(self, message: ToProvider) -> None:
        if isinstance(message, CallerAudio):
            await self._on_caller_audio(message)
        elif isinstance(message, ToolResult):
            await self._on_tool_result(message)
        elif isinstance(message, RespondNow):
            note = wire.ContentTurn("user", f"[{message.note}]")
            await self._send(wire.ClientContent((note,), turn_complete=True))
        elif isinstance(message, CallerText):  # a typed caller turn
            turn = wire.ContentTurn("user", message.text)
            await self._send(wire.ClientContent((turn,), turn_complete=True))
        else:
            await self._on_truncate(message)

    async def _on_caller_audio(self, message: CallerAudio) -> None:
        chunk = message.chunk
        self._caller_ms = message.offset_ms + chunk.duration_ms
        converted = self._to_model.convert(chunk)
        if converted is None or not converted.data:
            return
        data = converted.data
        if self._swap_buffer is not None:
            self._swap_buffer.append(data)
            self._swap_buffer_ms += 1000.0 * len(data) / 2 / wire.INPUT_SAMPLE_RATE
            while self._swap_buffer_ms > SWAP_BUFFER_MS and self._swap_buffer:
                dropped = self._swap_buffer.popleft()
                self._swap_buffer_ms -= 1000.0 * len(dropped) / 2 / wire.INPUT_SAMPLE_RATE
            return
        await self._send(wire.RealtimeAudio(data))

    async def _on_tool_result(self, result: ToolResult) -> None:
        call = self._calls.pop(result.call_id, None)
        if call is None:
            return  # cancelled by the model, or not ours
        key = "output" if result.ok else "error"
        await self._send(
            wire.ToolResponse((wire.FunctionResponse(call.id, call.name, {key: result.output}),))
        )
        response = self._responses.get(result.response_id)
        if response is not None:
            response.tools_pending.discard(call.id)
        self.conversation.append(ToolRan(call.id, call.name, call.args, result.output, result.ok))

    async def _on_truncate(self, message: TruncateResponse) -> None:
        assert self._events is not None
        response = self._responses.get(message.response_id)
        if response is None:
            return
        if not response.stopped:
            await self._stop(response)
        text = " ".join(response.transcript).strip()
        heard = heard_text([(text, response.audio_ms)], message.heard_ms)
        self._record_agent(response.id, heard, interrupted=True)
        await self._events.emit(
            "provider.truncated", response_id=message.response_id, heard_ms=message.heard_ms
        )

    # -- what the server sends ---------------------------------------------------------

    async def _read(self, conn: _Connection) -> None:
        assert self._events is not None
        while True:
            raw = await conn.ws.get_message()
            self._tape.provider(conn.source, raw)
            if conn.retired:
                return
            try:
                messages = wire.parse_server(raw)
            except wire.GeminiLiveError as exc:
                log.warning("unreadable gemini live message", reason=exc.reason)
                await self._events.emit("provider.bad_message", provider=self.name, detail=str(exc))
                continue
            for message in messages:
                await self._on_server(conn, message)

    async def _on_server(self, conn: _Connection, message: wire.ServerMessage) -> None:
        if isinstance(message, wire.ServerContent):
            await self._on_content(message)
        elif isinstance(message, wire.ToolCall):
            response = await self._ensure_response()
            for call in message.calls:
                self._calls[call.id] = call
                response.tools_pending.add(call.id)
                await self._send_up(
                    ToolCallRequested(call.id, call.name, dict(call.args), response.id)
                )
        elif isinstance(message, wire.ToolCallCancellation):
            assert self._events is not None
            for call_id in message.ids:
                self._calls.pop(call_id, None)
                if self._response is not None:
                    self._response.tools_pending.discard(call_id)
            await self._events.emit("provider.tool_cancelled", call_ids=list(message.ids))
        elif isinstance(message, wire.SessionResumptionUpdate):
            if message.resumable and message.new_handle:
                self._handle = message.new_handle
        elif isinstance(message, wire.GoAway) and not conn.going_away and conn is self._conn:
            conn.going_away = True
            assert self._nursery is not None
            self._nursery.start_soon(self._swap, conn, message.time_left_ms)

    async def _on_content(self, content: wire.ServerContent) -> None:
        if content.input_transcription:
            self._caller_text.append(content.input_transcription)
            await self._send_up(SpeechHeard(self._caller_ms))  # the caller is talking
        if content.interrupted:
            await self._send_up(SpeechStarted(self._caller_ms))
            if self._response is not None and not self._response.stopped:
                await self._stop(self._response)
        audio = content.audio
        if audio or content.output_transcription:
            response = await self._ensure_response()
            if content.output_transcription:
                response.transcript.append(content.output_transcription)
            if audio and not response.stopped:
                await self._play(response, audio)
        if content.turn_complete:
            await self._turn_complete()

    async def _ensure_response(self) -> _Response:
        if self._response is not None:
            return self._response
        await self._flush_caller_text()
        greeting = self._greeting_pending
        self._greeting_pending = False
        rid = "greeting" if greeting else f"gemini_{next(self._ids)}"
        response = _Response(rid, greeting, ToFormat(self.ctx.caller_format))
        self._response = self._responses[rid] = response
        await self._send_up(ResponseStarted(rid, greeting=greeting))
        return response

    async def _flush_caller_text(self) -> None:
        text = "".join(self._caller_text).strip()
        self._caller_text.clear()
        if text:
            await self._send_up(CallerTranscript(text, self._utterance_start_ms, self._caller_ms))
            self.conversation.append(CallerSaid(text))

    async def _play(self, response: _Response, audio: bytes, *, last: bool = False) -> None:
        pieces = [
            response.to_caller.convert(AudioChunk(audio, "pcm16", wire.OUTPUT_SAMPLE_RATE)),
            response.to_caller.flush() if last else None,
        ]
        data = b"".join(p.data for p in pieces if p is not None)
        if not data:
            return
        fmt = self.ctx.caller_format
        chunk = AudioChunk(data, fmt.encoding, fmt.sample_rate)
        response.audio_ms += chunk.duration_ms
        await self._send_up(AgentAudio(chunk, response.id))

    async def _turn_complete(self) -> None:
        response = self._response
        if response is None:
            await self._flush_caller_text()
            return
        if response.tools_pending:
            return  # the model goes on once the tool's result arrives
        self._response = None
        self._utterance_start_ms = self._caller_ms
        if response.stopped:
            return
        await self._play(response, b"", last=True)
        text = " ".join(t.strip() for t in response.transcript if t.strip())
        await self._flush_caller_text()  # a late transcription of the caller
        if text:
            await self._send_up(AgentTranscript(text, response.id))
        self._record_agent(response.id, text, interrupted=False)
        await self._send_up(ResponseDone(response.id))

    async def _stop(self, response: _Response) -> None:
        """The caller barged in: drop the rest of ``response`` and report it done."""
        response.stopped = True
        if self._response is response:
            self._response = None
            self._utterance_start_ms = self._caller_ms
        self._record_agent(response.id, " ".join(response.transcript).strip(), interrupted=True)
        await self._send_up(ResponseDone(response.id, interrupted=True))

    def _record_agent(self, response_id: str, text: str, *, interrupted: bool) -> None:
        item = AgentSaid(text, interrupted)
        key = f"agent:{response_id}"
        index = self._said_index.get(key)
        if index is None:
            self._said_index[key] = len(self.conversation)
            self.conversation.append(item)
        else:
            self.conversation[index] = item

    async def _send_up(self, message: ProviderOutput) -> None:
        assert self._outbox is not None
        await self._outbox.send(message)

    # -- goAway: resume on a new connection ----------------------------------------------

    async def _swap(self, old: _Connection, time_left_ms: float | None) -> None:
        assert self._events is not None and self._nursery is not None
        self._swap_buffer, self._swap_buffer_ms = deque(), 0.0
        new = await self._nursery.start(self._run_connection, self._handle)
        buffered = self._swap_buffer
        while buffered:
            await self._send(wire.RealtimeAudio(buffered.popleft()), new)
        self._conn, self._swap_buffer = new, None
        old.retired = True
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await old.ws.aclose()
        await self._events.emit(
            "provider.resumed",
            provider=self.name,
            connection=new.number,
            resumed=self._handle is not None,
            time_left_ms=time_left_ms,
        )


async def _setup_complete(
    ws: trio_websocket.WebSocketConnection, record: Callable[[str | bytes], None]
) -> None:
    """Read until ``setupComplete`` (the server's first message); ``record`` sees each."""
    while True:
        raw = await ws.get_message()
        record(raw)
        if any(isinstance(m, wire.SetupComplete) for m in wire.parse_server(raw)):
            return


def _connect_failure(exc: BaseException) -> _Failure:
    """The failure a connector's exception means; re-raises anything else (cancellation)."""
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    if isinstance(leaf, trio_websocket.ConnectionRejected):
        status = leaf.status_code
        kind: FailureKind = "http_5xx" if 500 <= status <= 599 else "error_event"
        return _Failure(kind, f"handshake refused: HTTP {status}")
    if isinstance(leaf, (OSError, trio_websocket.HandshakeError)):
        return _Failure("disconnect", f"cannot connect: {type(leaf).__name__}: {leaf}")
    raise exc


def _closed(reason: trio_websocket.CloseReason | None) -> _Failure:
    if reason is None:
        return _Failure("disconnect", "the connection was lost")
    detail = f"server closed the connection: {reason.code} {reason.reason or ''}".strip()
    if reason.code in ERROR_CLOSE_CODES or (reason.reason and reason.code != 1006):
        return _Failure("error_event", detail)
    return _Failure("disconnect", detail)


def _as_turn(item: ConversationItem) -> wire.ContentTurn | None:
    if isinstance(item, CallerSaid):
        return wire.ContentTurn("user", item.text)
    if isinstance(item, CallerUnheard):
        return wire.ContentTurn("user", UNHEARD_NOTE)
    if isinstance(item, AgentSaid):
        return wire.ContentTurn("model", item.text) if item.text else None
    outcome = "returned" if item.ok else "failed with"
    return wire.ContentTurn(
        "model",
        f"[I already called the tool {item.name} with {dict(item.arguments)}; it {outcome}: "
        f"{item.output}. It is done and must not be called again.]",
    )


def build(setup: ProviderSetup) -> GeminiLiveProvider:
    """The ``gemini-live`` provider for a call (see :mod:`switchboard.actors.providers`)."""
    return GeminiLiveProvider(setup)
