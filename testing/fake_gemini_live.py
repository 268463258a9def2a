"""A fake Gemini Live server (``BidiGenerateContent``) that speaks the real wire protocol.

Messages are those of :mod:`switchboard.codecs.gemini_live`, sent as JSON in
BINARY frames as Google's server does. The fake:

- refuses the handshake with the script's ``http_5xx`` fault (turn 0);
- expects ``setup`` first and answers ``setupComplete`` (a ``setup`` with a
  ``sessionResumption.handle`` it issued resumes that session: the
  conversation and the script's turn count go on; an unknown handle is
  closed with 1007, as the real server refuses an invalid argument);
- hears ``realtimeInput`` audio (PCM16 16 kHz) with :class:`~.speech.Ear`;
  while the caller speaks, sends ``inputTranscription`` pieces of the next
  turn's ``caller_text`` (a word per 400 ms of speech, the rest when the
  utterance ends), as the real server transcribes as it hears (it sends no
  speech events); each utterance that ends is answered with the script's
  next turn: ``modelTurn``
  audio (eSpeak at 24 kHz, ~100 ms per message, paced with short sleeps)
  with ``outputTranscription``, a ``toolCall`` (waiting for the
  ``toolResponse``), the rest of the answer, ``generationComplete``,
  ``turnComplete`` with ``usageMetadata``, and a ``sessionResumptionUpdate``;
- answers ``clientContent`` with ``turnComplete``: the greeting when the
  session has not answered anything yet and the turns hold no ``model``
  turn (the runtime's request to greet), or when the last turn is the
  model's (nothing to answer: a real model greets again), otherwise the
  answer to the caller's latest turn (``user`` turns count as caller
  utterances); text turns get no ``inputTranscription`` (the real server
  transcribes audio only);
- sends ``interrupted`` and stops its answer when the caller speaks over it;
- with ``go_away_after_turn=n``: after the n-th answer, sends
  ``sessionResumptionUpdate`` and ``goAway`` (``timeLeft``) and closes the
  connection once that time is up.

Faults (see :mod:`.script`): ``http_5xx``; ``error_event`` (closes with
1011 and a reason, as the real server does on an internal error);
``stall``; ``drop`` (the TCP stream closes with no close frame);
``slow_first_byte``.

``fake.received`` holds every client message (parsed), ``fake.received_raw``
and ``fake.sent`` the raw frames, ``fake.connections`` the number of
connections, so tests can check the wire against published types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import count
from typing import Final

import trio
import trio_websocket

from switchboard.codecs import gemini_live as wire

from .script import Script, Turn
from .speech import Ear, speak_bytes

__all__ = ["FakeGeminiLive"]

CHUNK_MS: Final = 100.0
PACE_S: Final = 0.02  # between audio messages: five times faster than real time
GO_AWAY_MS: Final = 2000.0
WORD_MS: Final = 400.0  # of caller speech per word of input transcription


@dataclass
class _Session:
    """What a resumed session continues from."""

    utterances: int = 0
    answered: int = 0
    history: list[wire.ContentTurn] = field(default_factory=list)


class _Dropped(Exception):  # noqa: N818 - a signal inside the fake, never seen outside
    pass


class _Connection:
    def __init__(self, fake: FakeGeminiLive, ws: trio_websocket.WebSocketConnection, n: int):
        self.fake = fake
        self.ws = ws
        self.number = n
        self.session = _Session()
        self.resumable = False
        self.ear = Ear(wire.INPUT_SAMPLE_RATE, silence_ms=500)
        self.answer_scope: trio.CancelScope | None = None
        self.speaking = False
        self.tool_results: dict[str, trio.MemorySendChannel[wire.FunctionResponse]] = {}
        self.drop_after: int | None = None
        self.words: list[str] = []  # of the utterance being heard, not yet transcribed
        self.next_word_ms = 0.0
        self.first_word = True

    async def send(self, *messages: wire.ServerMessage) -> None:
        if self.drop_after is not None:
            if self.drop_after <= 0:
                raise _Dropped
            self.drop_after -= 1
        frame = wire.encode_server(*messages)
        self.fake.sent.append(frame)
        await self.ws.send_message(frame)  # bytes: a binary frame


class FakeGeminiLive:
    """A scripted Gemini Live server: pass :meth:`handle` to ``serve`` or ``memory_connector``.

    Args:
        script: what to say and which faults to inject.
        go_away_after_turn: after answering this caller turn (1-based), send
            ``goAway`` and close the connection ``GO_AWAY_MS`` later.
    """

    def __init__(self, script: Script, *, go_away_after_turn: int | None = None) -> None:
        self.script = script
        self.go_away_after_turn = go_away_after_turn
        self.connections = 0
        self.received: list[wire.ClientMessage] = []
        self.received_raw: list[str | bytes] = []
        self.sent: list[bytes] = []
        self.setups: list[wire.Setup] = []
        self._sessions: dict[str, _Session] = {}
        self._handles = count(1)
        self._calls = count(1)

    async def handler(self, request: trio_websocket.WebSocketRequest) -> None:
        """Serve one connection (trio-websocket's server handler signature)."""
        self.connections += 1
        n = self.connections
        refusal = self.script.fault("http_5xx", connection=n, turn=0)
        if refusal is not None:
            await request.reject(refusal.status, body=b'{"error": {"code": 503}}')
            return
        ws = await request.accept()
        conn = _Connection(self, ws, n)
        try:
            async with trio.open_nursery() as nursery:
                await self._serve(conn, nursery)
                nursery.cancel_scope.cancel()
        except* _Dropped:
            # No close frame: the connection is lost (trio-websocket has no public abort).
            await ws._stream.aclose()
        except* wire.GeminiLiveError as bad:
            await ws.aclose(1007, f"Invalid JSON payload: {bad.exceptions[0]}"[:120])
        except* trio_websocket.ConnectionClosed:
            pass

    async def _serve(self, conn: _Connection, nursery: trio.Nursery) -> None:
        first = await self._receive(conn)
        if not isinstance(first, wire.Setup):
            await conn.ws.aclose(1007, "The first message must be setup.")
            return
        self.setups.append(first)
        if first.resume_handle is not None:
            session = self._sessions.get(first.resume_handle)
            if session is None:
                await conn.ws.aclose(1007, "Invalid session resumption handle.")
                return
            conn.session = replace(session, history=list(session.history))
        conn.resumable = first.session_resumption
        await conn.send(wire.SetupComplete())
        while True:
            message = await self._receive(conn)
            if isinstance(message, wire.RealtimeAudio):
                await self._hear(conn, message.data, nursery)
            elif isinstance(message, wire.ClientContent):
                conn.session.history.extend(message.turns)
                if not message.turn_complete:
                    conn.session.utterances += sum(t.role == "user" for t in message.turns)
                    continue
                history = conn.session.history
                greet = conn.session.answered == 0 and not any(t.role == "model" for t in history)
                if greet or history[-1].role == "model":
                    # Asked to greet, or given nothing to answer: a model greets (as real
                    # models did when a switch handed them no caller turn, issue 11).
                    self._start(conn, nursery, 0, Turn(say=self.script.greeting, caller_text=""))
                else:
                    conn.session.utterances += sum(t.role == "user" for t in message.turns)
                    n = max(1, conn.session.utterances)
                    self._start(conn, nursery, n, self.script.turn(n))
            elif isinstance(message, wire.ToolResponse):
                for response in message.responses:
                    waiter = conn.tool_results.pop(response.id, None)
                    if waiter is not None:
                        waiter.send_nowait(response)

    async def _receive(self, conn: _Connection) -> wire.ClientMessage:
        raw = await conn.ws.get_message()
        self.received_raw.append(raw)
        message = wire.parse_client(raw)
        self.received.append(message)
        return message

    async def _hear(self, conn: _Connection, audio: bytes, nursery: trio.Nursery) -> None:
        for heard in conn.ear.hear(audio):
            if heard.speaking:
                if conn.speaking and conn.answer_scope is not None:
                    conn.answer_scope.cancel()
                    conn.speaking = False
                    await conn.send(wire.ServerContent(interrupted=True))
                n = conn.session.utterances + 1
                conn.words = self.script.turn(n).caller_text.split()
                conn.next_word_ms, conn.first_word = heard.at_ms, True
            else:
                await self._transcribe(conn, everything=True)
                conn.session.utterances += 1
                n = conn.session.utterances
                self._start(conn, nursery, n, self.script.turn(n))
        if conn.ear.speaking:
            await self._transcribe(conn)

    async def _transcribe(self, conn: _Connection, *, everything: bool = False) -> None:
        """``inputTranscription`` of the caller, as Gemini sends it: while they speak, a
        word per :data:`WORD_MS` of their speech (the turn's ``caller_text``); the
        rest once the utterance ends."""
        while conn.words and (everything or conn.ear.heard_ms >= conn.next_word_ms):
            word = conn.words.pop(0)
            piece = word if conn.first_word else " " + word
            conn.first_word = False
            await conn.send(wire.ServerContent(input_transcription=piece))
            conn.next_word_ms += WORD_MS

    def _start(self, conn: _Connection, nursery: trio.Nursery, n: int, turn: Turn) -> None:
        if conn.answer_scope is not None:
            conn.answer_scope.cancel()
        scope = conn.answer_scope = trio.CancelScope()
        nursery.start_soon(self._answer, conn, scope, n, turn, nursery)

    async def _answer(
        self, conn: _Connection, scope: trio.CancelScope, n: int, turn: Turn, nursery: trio.Nursery
    ) -> None:
        script, c = self.script, conn.number
        with scope:
            if script.fault("error_event", connection=c, turn=n) is not None:
                await conn.ws.aclose(1011, "Internal error encountered.")
                return
            drop = script.fault("drop", connection=c, turn=n)
            if drop is not None:
                conn.drop_after = drop.after_messages
            slow = script.fault("slow_first_byte", connection=c, turn=n)
            if slow is not None:
                await trio.sleep(slow.delay_ms / 1000)
            stall = script.fault("stall", connection=c, turn=n)
            budget_ms = stall.after_audio_ms if stall is not None else math.inf
            budget_ms = await self._say(conn, turn.say, budget_ms)
            if turn.tool is not None:
                call_id = f"function-call-{next(self._calls)}"
                send, receive = trio.open_memory_channel[wire.FunctionResponse](1)
                conn.tool_results[call_id] = send
                await conn.send(
                    wire.ToolCall(
                        (wire.FunctionCall(call_id, turn.tool.name, turn.tool.arguments),)
                    )
                )
                result = await receive.receive()
                failed = "error" in result.response and turn.tool.on_error
                then = turn.tool.on_error if failed else turn.then_say
                budget_ms = await self._say(conn, then, budget_ms)
            conn.session.history.append(wire.ContentTurn("model", turn.text))
            conn.session.answered += 1
            await conn.send(wire.ServerContent(generation_complete=True))
            await conn.send(
                wire.ServerContent(turn_complete=True),
                wire.UsageMetadata(
                    prompt_token_count=10, response_token_count=20, total_token_count=30
                ),
            )
            if conn.resumable:
                handle = f"session-handle-{next(self._handles)}"
                self._sessions[handle] = replace(conn.session, history=list(conn.session.history))
                await conn.send(wire.SessionResumptionUpdate(handle, resumable=True))
            if self.go_away_after_turn is not None and n == self.go_away_after_turn:
                await conn.send(wire.GoAway(GO_AWAY_MS))
                nursery.start_soon(_close_after, conn.ws, GO_AWAY_MS / 1000)

    async def _say(self, conn: _Connection, text: str, budget_ms: float) -> float:
        """Speak ``text``; stall forever once ``budget_ms`` of audio is spent. Returns the rest."""
        audio = speak_bytes(text, wire.OUTPUT_SAMPLE_RATE)
        if not audio:
            return budget_ms
        step = int(wire.OUTPUT_SAMPLE_RATE * CHUNK_MS / 1000) * 2
        conn.speaking = True
        try:
            for i in range(0, len(audio), step):
                if budget_ms <= 0:
                    await trio.sleep_forever()
                chunk = audio[i : i + step]
                content = wire.ServerContent(parts=(wire.InlineAudio(chunk),))
                if i == 0:
                    content = replace(content, output_transcription=text)
                await conn.send(content)
                budget_ms -= 1000 * len(chunk) / 2 / wire.OUTPUT_SAMPLE_RATE
                await trio.sleep(PACE_S)
        finally:
            conn.speaking = False
        return budget_ms


async def _close_after(ws: trio_websocket.WebSocketConnection, seconds: float) -> None:
    await trio.sleep(seconds)
    await ws.aclose(1000, "")
