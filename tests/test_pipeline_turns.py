"""The shared cascaded pipeline, on Trio's MockClock, with stages the test controls.

What a caller would notice: the first sentence is heard while the model is
still writing the rest; a tool's result makes it into the answer; after a
barge-in the agent does not believe it said what the caller never heard; a
failing service ends the provider with the reason the failover needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
import trio

from switchboard.actors.context import PHONE_AUDIO, CallContext, EventSink
from switchboard.actors.messages import (
    AgentAudio,
    AgentSaid,
    AgentTranscript,
    AudioChunk,
    CallerAudio,
    CallerSaid,
    CallerTranscript,
    CallerUnheard,
    CallEvent,
    ConversationItem,
    ProviderFailed,
    ProviderReady,
    RespondNow,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    ToolCallRequested,
    ToolRan,
    ToolResult,
    ToProvider,
    ToSupervisor,
    TruncateResponse,
)
from switchboard.actors.pipeline import CallTool, Heard, Pipeline, Play, Say, StageFailed, ToolCall
from switchboard.orchestrator.agent_file import parse_agent_yaml

AGENT = parse_agent_yaml(
    "name: t\ntenant: t\ngreeting: Hello there. How can I help?\nintents: []\n"
)
TTS_RATE = 24000
MS_PER_CHAR = 50.0  # the test voice speaks one character in 50 ms


class ScriptedListener:
    """Reports what the test puts in ``said`` (and drains the caller audio)."""

    def __init__(self) -> None:
        self.say, self._said = trio.open_memory_channel[Heard](10)

    async def __call__(
        self,
        audio: trio.MemoryReceiveChannel[CallerAudio],
        heard: Callable[[Heard], Awaitable[None]],
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, audio)
            async for event in self._said:
                await heard(event)


async def _drain(audio: trio.MemoryReceiveChannel[CallerAudio]) -> None:
    async for _ in audio:
        pass


Step = str | float | ToolCall  # say text, sleep seconds, or call a tool


@dataclass
class ScriptedThinker:
    """Answers each turn with a list of steps; records the history it was given."""

    answers: list[list[Step]]
    histories: list[tuple[ConversationItem, ...]] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)

    async def __call__(
        self,
        history: Sequence[ConversationItem],
        utterance: CallerTranscript | None,
        say: Say,
        call_tool: CallTool,
    ) -> None:
        self.histories.append(tuple(history))
        for step in self.answers[len(self.histories) - 1]:
            if isinstance(step, str):
                await say(step)
            elif isinstance(step, ToolCall):
                result = await call_tool(step)
                self.results.append(result)
                await say(f" {result.output}")
            else:
                await trio.sleep(step)
        self.finished_at.append(trio.current_time())


@dataclass
class ScriptedVoice:
    """PCM16 at 24 kHz, ``MS_PER_CHAR`` per character, in 100 ms chunks (real time by default)."""

    texts: list[str] = field(default_factory=list)
    fail_with: StageFailed | None = None
    real_time: float = 1.0  # synthesis time / audio time

    async def __call__(self, text: str, play: Play) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.texts.append(text)
        samples = int(len(text) * MS_PER_CHAR * TTS_RATE / 1000)
        step = TTS_RATE // 10
        for start in range(0, samples, step):
            n = min(step, samples - start)
            await play(AudioChunk(b"\x10\x00" * n, "pcm16", TTS_RATE))
            await trio.sleep(0.1 * self.real_time)


@dataclass
class Call:
    pipeline: Pipeline
    listener: ScriptedListener
    inbox: trio.MemorySendChannel[ToProvider]
    outbox: trio.MemoryReceiveChannel[ToSupervisor]
    received: list[tuple[float, ToSupervisor]] = field(default_factory=list)

    async def next(self, kind: type, timeout_s: float = 30.0) -> ToSupervisor:
        """The next message of ``kind`` (the ones before it are kept in ``received``)."""
        with trio.fail_after(timeout_s):
            async for message in self.outbox:
                self.received.append((trio.current_time(), message))
                if isinstance(message, kind):
                    return message
        raise AssertionError(f"the pipeline ended before sending {kind.__name__}")

    async def utterance(self, text: str) -> None:
        await self.listener.say.send(SpeechStarted(0.0))
        await self.listener.say.send(CallerTranscript(text, 0.0, 500.0))


@asynccontextmanager
async def running(
    thinker: ScriptedThinker, voice: ScriptedVoice, **kw: object
) -> AsyncIterator[Call]:
    ctx = CallContext(uuid4(), uuid4(), uuid4(), AGENT, trio.current_time(), PHONE_AUDIO)
    listener = ScriptedListener()
    pipeline = Pipeline(
        "test",
        ctx,
        listener=listener,
        thinker=thinker,
        voice=voice,
        **kw,  # type: ignore[arg-type]
    )
    to_provider, inbox = trio.open_memory_channel[ToProvider](64)
    outbox, from_provider = trio.open_memory_channel[ToSupervisor](1000)
    events_send, _events_receive = trio.open_memory_channel[CallEvent](1000)
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            async with outbox:
                await pipeline(inbox, outbox, EventSink(ctx, events_send))

        nursery.start_soon(run)
        call = Call(pipeline, listener, to_provider, from_provider)
        assert isinstance(await call.next(ProviderReady), ProviderReady)
        yield call
        await to_provider.aclose()


async def test_the_first_sentence_is_heard_while_the_model_is_still_writing(
    autojump_clock: trio.abc.Clock,
) -> None:
    thinker = ScriptedThinker([["We are open", " today. ", 2.0, "Until six ", "tonight."]])
    voice = ScriptedVoice()
    async with running(thinker, voice, greet=False) as call:
        await call.utterance("are you open")
        said_at = trio.current_time()
        first_audio = await call.next(AgentAudio)
        first_audio_at = trio.current_time()
        transcript = await call.next(AgentTranscript)
        await call.next(ResponseDone)
    assert isinstance(first_audio, AgentAudio)
    # Heard within a blink of the first sentence, two seconds before the model finished.
    assert first_audio_at - said_at < 0.1
    assert thinker.finished_at[0] - first_audio_at >= 2.0
    # Phone audio: G.711 mu-law at 8 kHz, whatever the voice produced.
    assert first_audio.chunk.encoding == "pcmu" and first_audio.chunk.sample_rate == 8000
    assert voice.texts == ["We are open today.", "Until six tonight."]
    assert isinstance(transcript, AgentTranscript)
    assert transcript.text == "We are open today. Until six tonight."
    audio_ms = sum(m.chunk.duration_ms for _, m in call.received if isinstance(m, AgentAudio))
    # (the resampler's flush adds under 4 ms per segment)
    assert audio_ms == pytest.approx(MS_PER_CHAR * sum(len(t) for t in voice.texts), abs=8)


async def test_the_greeting_is_spoken_first_as_one_text(autojump_clock: trio.abc.Clock) -> None:
    voice = ScriptedVoice()
    async with running(ScriptedThinker([]), voice) as call:
        started = await call.next(ResponseStarted)
        transcript = await call.next(AgentTranscript)
        await call.next(ResponseDone)
    assert isinstance(started, ResponseStarted) and started.greeting
    assert isinstance(transcript, AgentTranscript) and transcript.text == AGENT.greeting
    assert voice.texts == [AGENT.greeting]  # ready together: one request, no gap
    assert call.pipeline.history == [AgentSaid(AGENT.greeting)]


async def test_a_tool_call_goes_out_and_its_result_comes_back_into_the_answer(
    autojump_clock: trio.abc.Clock,
) -> None:
    thinker = ScriptedThinker([["Let me check.", ToolCall("lookup_hours", {"day": "monday"})]])
    voice = ScriptedVoice()
    async with running(thinker, voice, greet=False) as call:
        await call.utterance("when are you open on monday")
        request = await call.next(ToolCallRequested)
        assert isinstance(request, ToolCallRequested)
        assert (request.name, dict(request.arguments)) == ("lookup_hours", {"day": "monday"})
        # "Let me check." is spoken while the tool runs.
        await call.next(AgentAudio)
        await trio.sleep(0.5)
        await call.inbox.send(
            ToolResult(request.call_id, "lookup_hours", True, "Open 8 to 6.", request.response_id)
        )
        transcript = await call.next(AgentTranscript)
        await call.next(ResponseDone)
    assert isinstance(transcript, AgentTranscript)
    assert transcript.text == "Let me check. Open 8 to 6."
    assert voice.texts == ["Let me check.", "Open 8 to 6."]
    assert call.pipeline.history == [
        CallerSaid("when are you open on monday"),
        ToolRan(request.call_id, "lookup_hours", {"day": "monday"}, "Open 8 to 6."),
        AgentSaid("Let me check. Open 8 to 6."),
    ]


async def test_a_tool_that_never_answers_does_not_hang_the_response(
    autojump_clock: trio.abc.Clock,
) -> None:
    thinker = ScriptedThinker([[ToolCall("lookup_hours")]])
    async with running(thinker, ScriptedVoice(), greet=False, tool_timeout_s=3.0) as call:
        await call.utterance("hours")
        await call.next(ToolCallRequested)
        asked = trio.current_time()
        await call.next(AgentAudio)  # the answer goes on without the result
        assert trio.current_time() - asked == pytest.approx(3.0, abs=0.1)
        await call.next(ResponseDone)
    assert thinker.results[0].ok is False


async def test_barge_in_stops_the_answer_and_cuts_the_history_to_what_was_heard(
    autojump_clock: trio.abc.Clock,
) -> None:
    first = "One two three four five six seven eight nine ten."  # 50 chars: 2.5 s of audio
    thinker = ScriptedThinker([[first, " ", 3.0, "Eleven twelve."], ["Sure."]])
    voice = ScriptedVoice(real_time=0.2)  # synthesizes five times faster than it speaks
    async with running(thinker, voice, greet=False) as call:
        await call.utterance("count for me")
        started = await call.next(ResponseStarted)
        assert isinstance(started, ResponseStarted)
        await call.next(AgentAudio)
        await trio.sleep(1.0)
        # The caller heard the first 1.25 s (half of the first sentence) and spoke.
        await call.inbox.send(TruncateResponse(started.response_id, 1250.0))
        done = await call.next(ResponseDone)
        stopped_at = trio.current_time()
        assert isinstance(done, ResponseDone) and done.interrupted
        sent_after = [
            m for t, m in call.received if isinstance(m, AgentAudio) and t > stopped_at + 0.01
        ]
        await call.utterance("stop")
        await call.next(ResponseDone)
    assert not sent_after
    assert "Eleven twelve." not in voice.texts  # never synthesized
    cut = AgentSaid("One two three four five", interrupted=True)
    assert call.pipeline.history[:2] == [CallerSaid("count for me"), cut]
    # The model's next turn starts from what the caller actually heard.
    assert thinker.histories[1] == (CallerSaid("count for me"), cut, CallerSaid("stop"))
    transcripts = [m.text for _, m in call.received if isinstance(m, AgentTranscript)]
    assert transcripts[0] == "One two three four five"


async def test_a_late_truncation_cuts_a_finished_answer_in_the_history(
    autojump_clock: trio.abc.Clock,
) -> None:
    thinker = ScriptedThinker([["Short answer here."]])  # 18 chars: 900 ms
    async with running(thinker, ScriptedVoice(), greet=False) as call:
        await call.utterance("hi")
        done = await call.next(ResponseDone)
        assert isinstance(done, ResponseDone) and not done.interrupted
        await call.inbox.send(TruncateResponse(done.response_id, 650.0))  # 13 of 18 chars
        await trio.sleep(0.1)
    assert call.pipeline.history[-1] == AgentSaid("Short answer", interrupted=True)


async def test_after_a_failover_the_last_caller_turn_is_answered_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    before = (CallerSaid("book me in"), AgentSaid("Sure, which day?"), CallerSaid("Friday"))
    thinker = ScriptedThinker([["Friday it is."]])
    async with running(
        thinker, ScriptedVoice(), greet=False, respond_now=True, conversation=before
    ) as call:
        start = trio.current_time()
        started = await call.next(ResponseStarted)
        await call.next(ResponseDone)
    assert isinstance(started, ResponseStarted) and not started.greeting
    assert trio.current_time() - start < 2.0
    assert thinker.histories == [before]


async def test_after_a_failover_that_lost_the_callers_words_they_are_asked_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    """No caller turn to answer (the transcript never came): no greeting, no model call;
    the request to repeat is said at once, as a response that is not a greeting."""
    before = (AgentSaid(AGENT.greeting), CallerUnheard(AGENT.no_match_reply))
    thinker, voice = ScriptedThinker([]), ScriptedVoice()
    async with running(thinker, voice, greet=False, respond_now=True, conversation=before) as call:
        started = await call.next(ResponseStarted)
        await call.next(ResponseDone)
    assert isinstance(started, ResponseStarted) and not started.greeting
    assert voice.texts == [AGENT.no_match_reply] and thinker.histories == []


async def test_the_runtime_can_ask_for_a_line_to_be_said_now(
    autojump_clock: trio.abc.Clock,
) -> None:
    """RespondNow (a transfer that failed after its announcement): the local policy says
    the runtime's line, and it joins the history."""
    voice = ScriptedVoice()
    async with running(ScriptedThinker([]), voice, greet=False) as call:
        await call.inbox.send(RespondNow("the transfer failed", "I couldn't put you through."))
        await call.next(ResponseDone)
    assert voice.texts == ["I couldn't put you through."]
    assert call.pipeline.history == [AgentSaid("I couldn't put you through.")]


async def test_a_failing_voice_ends_the_provider_with_the_failure_kind(
    autojump_clock: trio.abc.Clock,
) -> None:
    voice = ScriptedVoice(fail_with=StageFailed("http_5xx", "TTS answered HTTP 503"))
    async with running(ScriptedThinker([]), voice) as call:
        failed = await call.next(ProviderFailed)
        with trio.fail_after(1):
            async for message in call.outbox:  # the actor ends: its outbox closes
                call.received.append((trio.current_time(), message))
    assert failed == ProviderFailed("test", "http_5xx", "TTS answered HTTP 503")
