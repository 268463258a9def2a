"""A fake OpenAI Realtime server: the real wire protocol, a scripted conversation, faults.

``FakeOpenAIRealtime(script).handler`` is a trio-websocket handler: serve it
on loopback (:func:`switchboard.testing.serve`) and set
``OPENAI_REALTIME_URL=ws://127.0.0.1:PORT``, or reach it in memory with
:func:`switchboard.testing.memory_connector` on Trio's MockClock.

What it does, per connection, as the real server does (event names and
shapes from :mod:`switchboard.codecs.openai_realtime`, checked in the tests
against the ``openai`` package's ``RealtimeServerEvent``):

- sends ``session.created``; answers ``session.update`` with ``session.updated``
  (the effective configuration);
- hears ``input_audio_buffer.append`` with server VAD (:class:`~.speech.Ear`,
  the session's ``silence_duration_ms``): ``input_audio_buffer.speech_started``,
  ``speech_stopped``, ``committed``,
  ``conversation.item.input_audio_transcription.completed`` (the turn's
  ``caller_text``), then answers the utterance;
- answers with ``response.created``, ``response.output_item.added``,
  ``response.output_audio.delta`` (about 100 ms of eSpeak speech each, in
  the session's output format, one every ``chunk_interval_s``: faster than
  real time, as the real server sends), ``response.output_audio_transcript.delta``/
  ``done``, function calls (``response.function_call_arguments.delta``/``done``;
  the answer goes on after a ``function_call_output`` item and
  ``response.create``), ``response.done``;
- a ``response.create`` before the caller spoke is answered with the
  script's greeting; later, with the answer to the last utterance (a
  ``user`` message item created by the client counts as one), or, after a
  ``system`` message (the runtime's note), with the turn's ``follow_up``;
- barge-in: speech starting while a response runs cancels it
  (``response.done`` with status ``cancelled``); ``response.cancel`` too;
  ``conversation.item.truncate`` is recorded in :attr:`truncations` and
  answered with ``conversation.item.truncated`` (or a client ``error`` when
  the item is unknown or shorter than ``audio_end_ms``);
- the script's faults (:mod:`.script`): ``http_5xx`` at the handshake,
  ``error_event`` (a ``server_error``), ``stall``, ``drop`` (close with code
  1011), ``slow_first_byte``.

With ``OpenAI-Beta: realtime=v1`` among the handshake headers it speaks the
beta names (``response.audio.delta``, ``g711_ulaw``).

Records for tests: :attr:`received` (every client event, as JSON data),
:attr:`sent` (every server event), :attr:`connections`, :attr:`requests`
(path and headers of each handshake), :attr:`truncations`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

import trio
import trio_websocket

from switchboard.codecs import openai_realtime as wire
from switchboard.codecs import ulaw_encode

from .script import Script, Turn
from .speech import Ear, speak

__all__ = ["FakeOpenAIRealtime", "HandshakeRecord"]

DEFAULT_SESSION: Final = wire.SessionConfig(
    instructions="",
    voice="alloy",
    input_format=wire.PCM16_24K,
    output_format=wire.PCM16_24K,
    turn_detection=wire.TurnDetection(
        type="server_vad",
        threshold=0.5,
        prefix_padding_ms=300,
        silence_duration_ms=500,
        create_response=True,
        interrupt_response=True,
    ),
    tools=(),
    tool_choice="auto",
    output_modalities=("audio",),
)
SERVER_ERROR_MESSAGE: Final = (
    "The server had an error while processing your request. Sorry about that!"
)


@dataclass(frozen=True)
class HandshakeRecord:
    """One connection attempt: the request path (with ``?model=``) and headers (lower-case)."""

    path: str
    headers: dict[str, str]


class _DroppedError(Exception):
    """The fake closed the connection (a ``drop`` fault)."""


class FakeOpenAIRealtime:
    """The fake server (see the module docstring).

    Args:
        script: what it says and which faults it injects.
        chunk_ms: audio per ``response.output_audio.delta``.
        chunk_interval_s: time between two audio deltas (real time is
            ``chunk_ms / 1000``; the real server is faster).
    """

    def __init__(
        self, script: Script, *, chunk_ms: int = 100, chunk_interval_s: float = 0.02
    ) -> None:
        self.script = script
        self.chunk_ms = chunk_ms
        self.chunk_interval_s = chunk_interval_s
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.truncations: list[dict[str, Any]] = []
        self.requests: list[HandshakeRecord] = []
        self.connections = 0
        self.utterances = 0
        self._ids = 0
        self._live: list[_Connection] = []

    def next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}_{self._ids:04d}"

    async def push(self, event: wire.ServerEvent) -> None:
        """Send ``event`` now on every open connection (to test a client's reaction)."""
        for connection in list(self._live):
            await connection.send(event)

    def received_types(self) -> list[str]:
        """The ``type`` of every client event received, in order."""
        return [str(e.get("type")) for e in self.received]

    async def handler(self, request: trio_websocket.WebSocketRequest) -> None:
        """Serve one WebSocket connection (trio-websocket handler)."""
        self.connections += 1
        number = self.connections
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        self.requests.append(HandshakeRecord(request.path, headers))
        refuse = self.script.fault("http_5xx", connection=number, turn=0)
        if refuse is not None:
            await request.reject(refuse.status, body=b'{"error": "fake: unavailable"}')
            return
        ws = await request.accept()
        beta = "realtime=v1" in headers.get("openai-beta", "")
        model = request.path.partition("model=")[2].partition("&")[0] or "gpt-realtime"
        connection = _Connection(self, ws, number, "beta" if beta else "ga", model)
        self._live.append(connection)
        try:
            await connection.run()
        except* (_DroppedError, trio_websocket.ConnectionClosed):
            pass  # dropped on purpose, or the client went away
        finally:
            self._live.remove(connection)


@dataclass
class _Response:
    id: str
    scope: trio.CancelScope
    reason: str = "turn_detected"


@dataclass
class _Connection:
    fake: FakeOpenAIRealtime
    ws: trio_websocket.WebSocketConnection
    number: int
    dialect: wire.Dialect
    model: str
    session: wire.SessionConfig = DEFAULT_SESSION
    ear: Ear | None = None
    speech_item: str = ""
    heard_here: int = 0
    active: _Response | None = None
    waiting_call: str | None = None  # a function call whose output is awaited
    call_output: bool = False
    tool_turn: int = 0
    noted: bool = False  # a system message came since the last response.create
    drop_countdown: int | None = None
    audio_items: dict[str, float] = field(default_factory=dict)  # item_id -> audio ms sent
    nursery: trio.Nursery | None = None

    async def run(self) -> None:
        self.session = replace(self.session, model=self.model, id=f"sess_{self.number:04d}")
        self.ear = self._ear()
        await self.send(wire.SessionCreated(session=self.session))
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            async for text in _messages(self.ws):
                try:
                    event = wire.parse_client_event(text)
                except wire.RealtimeEventError as exc:
                    await self.client_error("invalid_event", str(exc), "")
                    continue
                self.fake.received.append(json.loads(text))
                await self.on_client_event(event)
            nursery.cancel_scope.cancel()

    def _ear(self) -> Ear | None:
        td = self.session.turn_detection
        fmt = self.session.input_format or wire.PCM16_24K
        if td is None or td.type == "none":
            return None
        encoding = "pcm16" if fmt.encoding == "pcm16" else "pcmu"
        return Ear(fmt.sample_rate, encoding, silence_ms=td.silence_duration_ms or 500)

    async def send(self, event: wire.ServerEvent) -> None:
        if self.drop_countdown is not None:
            if self.drop_countdown <= 0:
                await self.ws.aclose(1011, "fake: connection dropped")
                raise _DroppedError
            self.drop_countdown -= 1
        if not isinstance(event, wire.UnknownEvent):
            event = replace(event, event_id=self.fake.next_id("event"))
        text = wire.encode_server_event(event, self.dialect)
        self.fake.sent.append(json.loads(text))
        await self.ws.send_message(text)

    # -- client events -------------------------------------------------------------------

    async def on_client_event(self, event: wire.ClientEvent) -> None:
        if isinstance(event, wire.InputAudioBufferAppend):
            await self.hear(event.audio)
        elif isinstance(event, wire.SessionUpdate):
            given = {
                f.name: getattr(event.session, f.name)
                for f in fields(event.session)
                if getattr(event.session, f.name) is not None
            }
            self.session = replace(self.session, **given)
            self.ear = self._ear()
            await self.send(wire.SessionUpdated(session=self.session))
        elif isinstance(event, wire.ConversationItemCreate):
            item = event.item
            if isinstance(item, wire.FunctionCallOutputItem) and item.call_id == self.waiting_call:
                self.call_output = True
            if isinstance(item, wire.MessageItem) and item.role == "user":
                self.fake.utterances += 1  # a caller turn given as text (after a failover)
            if isinstance(item, wire.MessageItem) and item.role == "system":
                self.noted = True
            added = replace(item, id=item.id or self.fake.next_id("item"))
            if self.dialect == "beta":
                await self.send(wire.ConversationItemCreated(item=added))
            else:
                await self.send(wire.ConversationItemAdded(item=added))
        elif isinstance(event, wire.ResponseCreate):
            await self.on_response_create(event)
        elif isinstance(event, wire.ResponseCancel):
            if self.active is not None:
                self.active.reason = "client_cancelled"
                self.active.scope.cancel()
        elif isinstance(event, wire.ConversationItemTruncate):
            await self.on_truncate(event)
        elif isinstance(event, wire.InputAudioBufferClear):
            await self.send(wire.InputAudioBufferCleared())

    async def hear(self, audio: bytes) -> None:
        if self.ear is None:
            return
        for heard in self.ear.hear(audio):
            at_ms = round(heard.at_ms)
            if heard.speaking:
                self.speech_item = self.fake.next_id("item")
                await self.send(
                    wire.InputAudioBufferSpeechStarted(
                        audio_start_ms=at_ms, item_id=self.speech_item
                    )
                )
                td = self.session.turn_detection
                if self.active is not None and (td is None or td.interrupt_response is not False):
                    self.active.reason = "turn_detected"
                    self.active.scope.cancel()
            else:
                await self.utterance_ended(at_ms)

    async def utterance_ended(self, at_ms: int) -> None:
        item_id = self.speech_item
        await self.send(wire.InputAudioBufferSpeechStopped(audio_end_ms=at_ms, item_id=item_id))
        await self.send(wire.InputAudioBufferCommitted(item_id=item_id))
        self.fake.utterances += 1
        self.heard_here += 1
        turn_no = self.fake.utterances
        stall = self.fake.script.fault("stall", connection=self.number, turn=turn_no)
        if stall is None or not stall.before_transcript:
            await self.send(
                wire.InputAudioTranscriptionCompleted(
                    item_id=item_id,
                    content_index=0,
                    transcript=self.fake.script.turn(turn_no).caller_text,
                    usage_seconds=1.0,
                )
            )
        td = self.session.turn_detection
        if td is not None and td.create_response is not False and self.active is None:
            self.start_response(turn_no, self.fake.script.turn(turn_no), first_part=True)

    async def on_response_create(self, event: wire.ResponseCreate) -> None:
        if self.active is not None:
            await self.client_error(
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress.",
                event.event_id,
            )
            return
        metadata = event.response.metadata if event.response else None
        noted, self.noted = self.noted, False
        turn_now = self.fake.script.turn(self.fake.utterances)
        if noted and self.fake.utterances and turn_now.follow_up:
            follow_up = Turn(then_say=turn_now.follow_up)
            self.start_response(self.fake.utterances, follow_up, False, metadata)
        elif self.waiting_call is not None and self.call_output:
            self.waiting_call = None
            self.start_response(
                self.tool_turn, self.fake.script.turn(self.tool_turn), False, metadata
            )
        elif self.fake.utterances == 0:
            self.start_response(0, Turn(say=self.fake.script.greeting), True, metadata)
        else:
            turn_no = self.fake.utterances
            self.start_response(turn_no, self.fake.script.turn(turn_no), True, metadata)

    async def on_truncate(self, event: wire.ConversationItemTruncate) -> None:
        self.fake.truncations.append(
            {
                "connection": self.number,
                "item_id": event.item_id,
                "content_index": event.content_index,
                "audio_end_ms": event.audio_end_ms,
            }
        )
        sent_ms = self.audio_items.get(event.item_id)
        if sent_ms is None:
            await self.client_error(
                "item_not_found", f"Item with item_id '{event.item_id}' not found.", event.event_id
            )
        elif event.audio_end_ms > sent_ms + 1:
            await self.client_error(
                "invalid_value",
                f"Audio content of {sent_ms:.0f}ms is already shorter than {event.audio_end_ms}ms",
                event.event_id,
            )
        else:
            await self.send(
                wire.ConversationItemTruncated(
                    item_id=event.item_id,
                    content_index=event.content_index,
                    audio_end_ms=event.audio_end_ms,
                )
            )

    async def client_error(self, code: str, message: str, client_event_id: str) -> None:
        await self.send(
            wire.ErrorEvent(
                error_type="invalid_request_error",
                code=code,
                message=message,
                client_event_id=client_event_id or None,
            )
        )

    # -- responses -----------------------------------------------------------------------

    def start_response(
        self,
        turn_no: int,
        turn: Turn,
        first_part: bool,
        metadata: Any = None,
    ) -> None:
        assert self.nursery is not None
        response = _Response(self.fake.next_id("resp"), trio.CancelScope())
        self.active = response
        self.nursery.start_soon(self.respond, response, turn_no, turn, first_part, metadata)

    async def respond(
        self, response: _Response, turn_no: int, turn: Turn, first_part: bool, metadata: Any
    ) -> None:
        script, n = self.fake.script, self.number
        output: list[wire.Item] = []
        info = wire.ResponseInfo(id=response.id, metadata=metadata)
        created = False
        with response.scope:
            if first_part:
                if script.fault("error_event", connection=n, turn=turn_no) is not None:
                    self.active = None
                    await self.send(
                        wire.ErrorEvent(
                            error_type="server_error",
                            code="server_error",
                            message=SERVER_ERROR_MESSAGE,
                        )
                    )
                    return
                drop = script.fault("drop", connection=n, turn=turn_no)
                if drop is not None:
                    self.drop_countdown = drop.after_messages
                slow = script.fault("slow_first_byte", connection=n, turn=turn_no)
                if slow is not None:
                    await trio.sleep(slow.delay_ms / 1000)
            stall = script.fault("stall", connection=n, turn=turn_no) if first_part else None
            if stall is not None and stall.after_audio_ms <= 0:
                await trio.sleep_forever()  # never answers
            await self.send(wire.ResponseCreated(response=info))
            created = True
            text = turn.say if first_part else turn.then_say
            if text:
                output.append(await self.speak(response.id, len(output), text, stall))
            if first_part and turn.tool is not None:
                output.append(await self.call(response.id, len(output), turn_no, turn))
        self.active = None
        if not created:
            return  # cancelled before it began
        if response.scope.cancelled_caught:
            done = replace(
                info, status="cancelled", status_reason=response.reason, output=tuple(output)
            )
        else:
            done = replace(info, status="completed", output=tuple(output))
        await self.send(wire.ResponseDone(response=done))

    async def speak(self, response_id: str, index: int, text: str, stall: Any) -> wire.MessageItem:
        fmt = self.session.output_format or wire.PCM16_24K
        pcm = speak(text, fmt.sample_rate)
        audio = ulaw_encode(pcm) if fmt.encoding == "pcmu" else pcm.astype("<i2").tobytes()
        width = 1 if fmt.encoding == "pcmu" else 2
        step = fmt.sample_rate * self.fake.chunk_ms // 1000 * width
        item_id = self.fake.next_id("item")
        part = wire.ContentPart(type="output_audio", transcript=text)
        item = wire.MessageItem(role="assistant", content=(part,), id=item_id)
        await self.send(
            wire.ResponseOutputItemAdded(
                response_id=response_id,
                output_index=index,
                item=replace(item, status="in_progress", content=()),
            )
        )
        self.audio_items[item_id] = 0.0
        words = text.split()
        chunks = [audio[i : i + step] for i in range(0, len(audio), step)] or [b""]
        said = 0
        ids: dict[str, Any] = {
            "response_id": response_id,
            "item_id": item_id,
            "output_index": index,
        }
        for k, chunk in enumerate(chunks):
            if stall is not None and self.audio_items[item_id] >= stall.after_audio_ms:
                await trio.sleep_forever()
            await self.send(wire.ResponseOutputAudioDelta(delta=chunk, **ids))
            self.audio_items[item_id] += 1000.0 * len(chunk) / width / fmt.sample_rate
            upto = round(len(words) * (k + 1) / len(chunks))
            if upto > said:
                delta = " ".join(words[said:upto]) + ("" if upto == len(words) else " ")
                await self.send(wire.ResponseOutputAudioTranscriptDelta(delta=delta, **ids))
                said = upto
            await trio.sleep(self.fake.chunk_interval_s)
        await self.send(wire.ResponseOutputAudioDone(**ids))
        await self.send(wire.ResponseOutputAudioTranscriptDone(transcript=text, **ids))
        done = replace(item, status="completed")
        await self.send(
            wire.ResponseOutputItemDone(response_id=response_id, output_index=index, item=done)
        )
        return done

    async def call(
        self, response_id: str, index: int, turn_no: int, turn: Turn
    ) -> wire.FunctionCallItem:
        assert turn.tool is not None
        call_id = self.fake.next_id("call")
        arguments = json.dumps(dict(turn.tool.arguments))
        item = wire.FunctionCallItem(
            call_id=call_id, name=turn.tool.name, arguments="", id=self.fake.next_id("item")
        )
        await self.send(
            wire.ResponseOutputItemAdded(
                response_id=response_id,
                output_index=index,
                item=replace(item, status="in_progress"),
            )
        )
        ids: dict[str, Any] = {
            "response_id": response_id,
            "item_id": item.id or "",
            "output_index": index,
        }
        await self.send(
            wire.ResponseFunctionCallArgumentsDelta(call_id=call_id, delta=arguments, **ids)
        )
        await self.send(
            wire.ResponseFunctionCallArgumentsDone(
                call_id=call_id, name=turn.tool.name, arguments=arguments, **ids
            )
        )
        done = replace(item, arguments=arguments, status="completed")
        await self.send(
            wire.ResponseOutputItemDone(response_id=response_id, output_index=index, item=done)
        )
        self.waiting_call, self.call_output, self.tool_turn = call_id, False, turn_no
        return done


async def _messages(ws: trio_websocket.WebSocketConnection) -> AsyncIterator[str | bytes]:
    """Every message until the peer closes."""
    while True:
        try:
            yield await ws.get_message()
        except trio_websocket.ConnectionClosed:
            return
