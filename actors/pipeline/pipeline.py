"""The cascaded pipeline as a provider actor: listener -> thinker -> voice.

One :class:`Pipeline` serves the ``local`` provider (offline stages) and the
``cascaded`` provider (network stages); see :mod:`.stages` for the slots.
The pipeline owns what is the same whatever fills them:

- turn taking: finished utterances queue up and are answered one at a time;
  typed text (:class:`CallerText`) queues with them and is answered from its
  text, as a turn heard by an earlier provider is (the thinker gets no
  ``utterance``; the local intent policy finds the intent in the text);
- sentence splitting: the thinker's text is spoken sentence by sentence as it
  streams, so the first audio does not wait for the whole answer (sentences
  that are ready together, such as a greeting, go to the voice as one text);
- conversion of the voice's audio to ``ctx.caller_format``;
- the messages to the supervisor: ``ResponseStarted``, ``AgentAudio``,
  ``AgentTranscript`` (once, at the end), ``ResponseDone``,
  ``ToolCallRequested``, with ``ToolResult`` routed back to the thinker;
- the conversation history, seeded from the previous provider's
  (``conversation``); with ``respond_now`` its last caller turn is answered
  at once;
- barge-in: ``SpeechStarted`` goes to the supervisor as it is heard; on
  ``TruncateResponse`` the response is cancelled (if still running) and its
  history entry cut to the words heard, in proportion to ``heard_ms`` over
  the spoken segments' audio durations;
- the greeting, spoken first when ``greet`` is set.

Tasks: the inbox loop (caller audio to the listener, tool results to the
thinker, truncation), the listener, and the responder; each response runs
the thinker and a speaker (voice) concurrently in a cancel scope of its own.
A :class:`~.stages.StageFailed` from any stage becomes one ``ProviderFailed``
and ends the actor.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Final

import structlog
import trio

from ..audio_convert import ToFormat
from ..context import CallContext, EventSink
from ..messages import (
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
    Outbox,
    ProviderFailed,
    ProviderReady,
    RespondNow,
    ResponseDone,
    ResponseStarted,
    ToolCallRequested,
    ToolRan,
    ToolResult,
    ToProvider,
    TruncateResponse,
)
from .sentences import SentenceSplitter, heard_text
from .stages import Heard, Listener, StageFailed, Thinker, ToolCall, Voice

__all__ = ["TOOL_TIMEOUT_S", "Pipeline"]

_Turn = CallerTranscript | CallerText | RespondNow
"""What the responder answers, in order: a heard utterance, a typed one, a note."""

log = structlog.get_logger("switchboard.pipeline")

TOOL_TIMEOUT_S: Final = 15.0
"""How long a response waits for a tool's result before going on without it."""
AUDIO_BUFFER: Final = 50
"""Caller audio chunks buffered for the listener (about a second of 20 ms frames)."""
DEFAULT_MS_PER_CHAR: Final = 65.0
"""Speech pace assumed before any segment of a response is finished (about 15 chars/s)."""
RESPONSES_KEPT: Final = 8
"""Finished responses remembered for a late ``TruncateResponse``."""


@dataclass
class _Segment:
    """Text given to the voice at once, and how much audio it has made so far."""

    text: str
    audio_ms: float = 0.0
    done: bool = False


@dataclass
class _Response:
    response_id: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    segments: list[_Segment] = field(default_factory=list)
    text: str = ""
    history_index: int | None = None
    truncated_at_ms: float | None = None

    def heard(self, heard_ms: float) -> str:
        """The words heard in the first ``heard_ms`` of this response's audio.

        A segment still being synthesized counts at its expected length
        (its characters at the pace of the finished ones), not at the audio
        made so far.
        """
        finished = [s for s in self.segments if s.done and s.text.strip()]
        chars = sum(len(s.text.strip()) for s in finished)
        pace = sum(s.audio_ms for s in finished) / chars if chars else DEFAULT_MS_PER_CHAR
        return heard_text(
            [
                (s.text, s.audio_ms if s.done else max(s.audio_ms, pace * len(s.text.strip())))
                for s in self.segments
            ],
            heard_ms,
        )


class Pipeline:
    """A provider actor made of a listener, a thinker and a voice.

    Args:
        name: the provider's name in ``ProviderReady``/``ProviderFailed``.
        ctx: the call (agent, caller audio format).
        listener, thinker, voice: the stages (:mod:`.stages`).
        conversation: the conversation so far (after a failover).
        greet: speak ``ctx.greeting`` first (the agent's greeting, after any consent line).
        respond_now: answer the conversation's last caller turn at once.
        tool_timeout_s: how long to wait for a tool's result.
    """

    def __init__(
        self,
        name: str,
        ctx: CallContext,
        *,
        listener: Listener,
        thinker: Thinker,
        voice: Voice,
        conversation: Sequence[ConversationItem] = (),
        greet: bool = True,
        respond_now: bool = False,
        tool_timeout_s: float = TOOL_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.ctx = ctx
        self.listener = listener
        self.thinker = thinker
        self.voice = voice
        self.greet = greet
        self.respond_now = respond_now
        self.tool_timeout_s = tool_timeout_s
        self.history: list[ConversationItem] = list(conversation)
        self._ids = count(1)
        self._responses: dict[str, _Response] = {}
        self._tool_waiters: dict[str, trio.MemorySendChannel[ToolResult]] = {}
        self._failed = False

    async def __call__(
        self,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        outbox: Outbox,
        events: EventSink,
    ) -> None:
        """Run until ``inbox`` closes or a stage fails (then ``ProviderFailed`` is sent).

        ``events`` is not written to: everything the pipeline does reaches the
        event log through the messages the supervisor logs.
        """
        await outbox.send(ProviderReady(self.name))
        audio_send, audio_receive = trio.open_memory_channel[CallerAudio](AUDIO_BUFFER)
        turns_send, turns_receive = trio.open_memory_channel[_Turn](8)
        notes = turns_send.clone()  # what the runtime asks to be said, what the caller typed
        async with trio.open_nursery() as nursery:

            def guarded(fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
                async def run() -> None:
                    try:
                        await fn()
                    except* StageFailed as group:  # stages run nurseries: failures come grouped
                        await self._fail(outbox, _first_leaf(group))
                        nursery.cancel_scope.cancel()

                return run

            async def listen() -> None:
                async with turns_send:
                    await self.listener(audio_receive, self._heard(outbox, turns_send))

            nursery.start_soon(guarded(listen))
            nursery.start_soon(guarded(lambda: self._respond(turns_receive, outbox)))
            async with audio_send, notes:
                async for message in inbox:
                    if isinstance(message, CallerAudio):
                        await audio_send.send(message)
                    elif isinstance(message, ToolResult):
                        waiter = self._tool_waiters.pop(message.call_id, None)
                        if waiter is not None:
                            waiter.send_nowait(message)
                    elif isinstance(message, TruncateResponse):
                        self._truncate(message)
                    elif isinstance(message, RespondNow | CallerText):
                        await notes.send(message)
            nursery.cancel_scope.cancel()

    async def _fail(self, outbox: Outbox, failure: StageFailed) -> None:
        if self._failed:
            return
        self._failed = True
        log.warning("pipeline stage failed", provider=self.name, kind=failure.kind)
        await outbox.send(ProviderFailed(self.name, failure.kind, failure.detail))

    # -- listening -------------------------------------------------------------

    def _heard(
        self,
        outbox: Outbox,
        turns: trio.MemorySendChannel[_Turn],
    ) -> Callable[[Heard], Awaitable[None]]:
        async def heard(event: Heard) -> None:
            if isinstance(event, CallerTranscript):
                if not event.text.strip() and event.intent is None:
                    return  # noise, not speech: nothing to answer
                await outbox.send(event)
                await turns.send(event)
            else:
                await outbox.send(event)  # SpeechStarted is the barge-in signal

        return heard

    # -- answering -------------------------------------------------------------

    async def _respond(
        self,
        turns: trio.MemoryReceiveChannel[_Turn],
        outbox: Outbox,
    ) -> None:
        agent = self.ctx.agent
        last = self.history[-1] if self.history else None
        if self.greet and agent.greeting.strip():
            greeting = self.ctx.greeting  # the consent line first, when announced
            await self._response(outbox, "greeting", None, fixed=greeting, greeting=True)
        if self.respond_now and isinstance(last, CallerSaid):
            await self._response(outbox, f"resp_{next(self._ids)}", None)
        elif self.respond_now and isinstance(last, CallerUnheard) and last.repeat.strip():
            # The caller's words were lost with the previous provider: ask again.
            await self._response(outbox, f"resp_{next(self._ids)}", None, fixed=last.repeat)
        async for utterance in turns:
            if isinstance(utterance, RespondNow):
                await self._response(outbox, f"resp_{next(self._ids)}", None, fixed=utterance.say)
                continue
            if isinstance(utterance, CallerText):  # typed: no audio, the text is the turn
                self.history.append(CallerSaid(utterance.text))
                await self._response(outbox, f"resp_{next(self._ids)}", None)
                continue
            self.history.append(CallerSaid(utterance.text))
            await self._response(outbox, f"resp_{next(self._ids)}", utterance)

    async def _response(
        self,
        outbox: Outbox,
        response_id: str,
        utterance: CallerTranscript | None,
        *,
        fixed: str | None = None,
        greeting: bool = False,
    ) -> None:
        """Say ``fixed`` (the greeting, a request to repeat) or the thinker's answer."""
        response = _Response(response_id)
        self._remember(response)
        await outbox.send(ResponseStarted(response_id, greeting=greeting))
        sentences_send, sentences_receive = trio.open_memory_channel[str](math.inf)
        splitter = SentenceSplitter()

        def flush() -> None:
            rest = splitter.flush()
            if rest.strip():
                sentences_send.send_nowait(rest)

        async def say(delta: str) -> None:
            response.text += delta
            for sentence in splitter.feed(delta):
                sentences_send.send_nowait(sentence)

        async def call_tool(call: ToolCall) -> ToolResult:
            flush()  # speak what was said before the tool while it runs
            if response.text and not response.text[-1].isspace():
                response.text += " "  # the text after the result is a new sentence
            return await self._call_tool(outbox, response_id, call)

        with response.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._speak, response, sentences_receive, outbox)
                async with sentences_send:
                    if fixed is not None:
                        await say(fixed)
                    else:
                        await self.thinker(tuple(self.history), utterance, say, call_tool)
                    flush()

        truncated = response.truncated_at_ms is not None
        if response.truncated_at_ms is not None:
            text = response.heard(response.truncated_at_ms)
        else:
            text = " ".join(response.text.split())
        response.history_index = len(self.history)  # from here a truncation cuts the entry
        self.history.append(AgentSaid(text, interrupted=truncated))
        if text:
            await outbox.send(AgentTranscript(text, response_id))
        await outbox.send(ResponseDone(response_id, interrupted=truncated))

    async def _speak(
        self,
        response: _Response,
        sentences: trio.MemoryReceiveChannel[str],
        outbox: Outbox,
    ) -> None:
        async for first in sentences:
            text = first
            while True:  # what is ready together goes to the voice together
                try:
                    text += sentences.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            segment = _Segment(text)
            response.segments.append(segment)
            converter = ToFormat(self.ctx.caller_format)

            async def send(chunk: AudioChunk | None, segment: _Segment = segment) -> None:
                if chunk is not None and chunk.data:
                    segment.audio_ms += chunk.duration_ms
                    await outbox.send(AgentAudio(chunk, response.response_id))

            async def play(chunk: AudioChunk, converter: ToFormat = converter) -> None:
                await send(converter.convert(chunk))

            await self.voice(text.strip(), play)
            await send(converter.flush())
            segment.done = True

    async def _call_tool(self, outbox: Outbox, response_id: str, call: ToolCall) -> ToolResult:
        call_id = call.call_id or f"call_{response_id}_{next(self._ids)}"
        send, receive = trio.open_memory_channel[ToolResult](1)
        self._tool_waiters[call_id] = send
        await outbox.send(ToolCallRequested(call_id, call.name, dict(call.arguments), response_id))
        result: ToolResult | None = None
        try:
            with trio.move_on_after(self.tool_timeout_s):
                result = await receive.receive()
        finally:  # answered, timed out, or the response was cancelled (barge-in)
            self._tool_waiters.pop(call_id, None)
        if result is None:
            result = ToolResult(
                call_id, call.name, False, "the tool did not answer in time", response_id
            )
        self.history.append(
            ToolRan(call_id, call.name, dict(call.arguments), result.output, result.ok)
        )
        return result

    # -- barge-in --------------------------------------------------------------

    def _truncate(self, message: TruncateResponse) -> None:
        response = self._responses.get(message.response_id)
        if response is None:
            return
        if response.history_index is None:  # still running: stop it, the responder cuts
            response.truncated_at_ms = message.heard_ms
            response.scope.cancel()
            return
        entry = self.history[response.history_index]
        if isinstance(entry, AgentSaid):
            heard = response.heard(message.heard_ms)
            if heard != entry.text:
                self.history[response.history_index] = AgentSaid(heard, interrupted=True)

    def _remember(self, response: _Response) -> None:
        self._responses[response.response_id] = response
        while len(self._responses) > RESPONSES_KEPT:
            del self._responses[next(iter(self._responses))]


def _first_leaf(group: BaseExceptionGroup[StageFailed]) -> StageFailed:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
