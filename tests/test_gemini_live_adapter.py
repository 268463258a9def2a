"""The gemini-live adapter against the fake Gemini Live server, in memory, on MockClock.

Each test checks what the runtime (and so the caller) would notice, and
every frame either side sent is validated against google-genai's
``LiveServerMessage`` / ``LiveClientMessage`` (``check_wire``).
"""

from __future__ import annotations

import trio
import trio_websocket
from gemini_live_harness import AGENT, running

from switchboard.actors.context import AudioFormat
from switchboard.actors.messages import (
    AgentAudio,
    AgentSaid,
    AgentTranscript,
    AudioChunk,
    CallerAudio,
    CallerSaid,
    CallerTranscript,
    ProviderFailed,
    ProviderReady,
    ResponseDone,
    ResponseStarted,
    SpeechHeard,
    SpeechStarted,
    ToolCallRequested,
    ToolRan,
    ToolResult,
    TruncateResponse,
)
from switchboard.codecs import Resampler, pcm16_to_bytes, ulaw_decode
from switchboard.codecs import gemini_live as wire
from switchboard.testing import Fault, Script, ToolStep, Turn
from switchboard.testing.fake_gemini_live import GO_AWAY_MS, FakeGeminiLive
from switchboard.testing.speech import speak_bytes

HOURS = Turn(
    say="Let me check.",
    tool=ToolStep("lookup_hours"),
    then_say="We are open nine to five.",
    caller_text="what are your opening hours",
)


async def test_greeting_is_requested_spoken_in_the_callers_format_and_transcribed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeGeminiLive(Script(greeting="Hello, thanks for calling."))
    async with running(fake, key="secret-key") as h:
        done = await h.next(ResponseDone)
        assert h.of(ProviderReady) and h.of(ResponseStarted) == [
            ResponseStarted("greeting", greeting=True)
        ]
        audio = h.of(AgentAudio)
        assert audio and {(a.chunk.encoding, a.chunk.sample_rate) for a in audio} == {
            ("pcmu", 8000)
        }
        # About as long as the fake's 24 kHz speech (resampled to 8 kHz, not sped up or cut).
        spoken_ms = sum(a.chunk.duration_ms for a in audio)
        assert abs(spoken_ms - len(fake_speech("Hello, thanks for calling.")) / 48) < 30
        assert h.of(AgentTranscript) == [AgentTranscript("Hello, thanks for calling.", "greeting")]
        assert done == ResponseDone("greeting")
        assert not h.of(CallerTranscript)

    setup = fake.setups[0]
    assert setup.model == AGENT.option("gemini-live", "model")
    assert setup.voice == "Kore" and setup.system_instruction == AGENT.instructions
    assert {t.name for t in setup.tools} == {
        "lookup_hours",
        "transfer_to_human",
        "hangup_call",
        "book_visit",
    }
    assert setup.input_transcription and setup.output_transcription and setup.session_resumption
    (request,) = [m for m in fake.received if isinstance(m, wire.ClientContent)]
    assert request.turn_complete and AGENT.greeting in request.turns[-1].text


async def test_the_api_key_goes_in_the_query_and_only_when_set(
    autojump_clock: trio.testing.MockClock,
) -> None:
    paths: list[str] = []

    for key in ("secret-key", None):
        fake = FakeGeminiLive(Script())

        async def handler(
            request: trio_websocket.WebSocketRequest, fake: FakeGeminiLive = fake
        ) -> None:
            paths.append(request.path)
            await fake.handler(request)

        async with running(fake, handler=handler, key=key) as h:
            await h.next(ProviderReady)
    assert paths == ["/ws/live?key=secret-key", "/ws/live"]


async def test_a_turn_with_a_tool_call(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeGeminiLive(Script(turns=(HOURS,)))
    async with running(fake) as h:
        await h.next(ResponseDone)
        start = len(h.out)
        await h.say("what are your opening hours")
        call = await h.next(ToolCallRequested, start)
        assert (call.name, dict(call.arguments)) == ("lookup_hours", {})
        # The caller's words come first, then the response the tool call belongs to.
        # While the caller talks, each piece of input transcription is a sign of speech.
        turn = [m for m in h.out[start:] if not isinstance(m, AgentAudio | SpeechHeard)]
        assert len(h.of(SpeechHeard)) == 5  # a piece per word: "what are your opening hours"
        kinds = [type(m) for m in turn]
        assert kinds == [CallerTranscript, ResponseStarted, ToolCallRequested]
        assert turn[0].text == "what are your opening hours"  # type: ignore[union-attr]
        assert call.response_id == "gemini_1"
        assert not h.of(ResponseDone)[1:]  # the answer waits for the tool's result
        await h.inbox.send(
            ToolResult(call.call_id, "lookup_hours", True, "nine to five", call.response_id)
        )
        done = await h.next(ResponseDone, start)
        assert done == ResponseDone("gemini_1")
        assert h.of(AgentTranscript)[-1] == AgentTranscript(
            "Let me check. We are open nine to five.", "gemini_1"
        )
        assert isinstance(h.provider.conversation[-2], ToolRan)
    (response,) = [m for m in fake.received if isinstance(m, wire.ToolResponse)]
    assert response.responses == (
        wire.FunctionResponse(call.call_id, "lookup_hours", {"output": "nine to five"}),
    )


async def test_browser_audio_is_converted_both_ways(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeGeminiLive(Script())
    async with running(fake, caller_format=AudioFormat("pcm16", 48000)) as h:
        await h.next(ResponseDone)
        assert {(a.chunk.encoding, a.chunk.sample_rate) for a in h.of(AgentAudio)} == {
            ("pcm16", 48000)
        }
        await h.inbox.send(CallerAudio(AudioChunk(b"\x00\x01" * 960, "pcm16", 48000), 0.0))
        await trio.sleep(1)
    audio = [m for m in fake.received if isinstance(m, wire.RealtimeAudio)]
    assert {m.sample_rate for m in audio} == {16000}


async def test_barge_in_interrupts_the_answer_and_truncate_keeps_what_was_heard(
    autojump_clock: trio.testing.MockClock,
) -> None:
    long = "We are open Monday to Friday from nine in the morning to five in the evening."
    fake = FakeGeminiLive(
        Script(turns=(Turn(say=long, caller_text="hours"), Turn(say="Sure.", caller_text="stop")))
    )
    async with running(fake) as h:
        await h.next(ResponseDone)
        start = len(h.out)
        await h.say("what are your opening hours", trailing_silence_ms=700)
        await h.next(AgentAudio, start)
        await h.say("stop please")  # over the answer, which lasts several seconds
        barge = await h.next(SpeechStarted, start)
        done = await h.next(ResponseDone, start)
        assert done == ResponseDone("gemini_1", interrupted=True)
        assert h.out.index(barge) < h.out.index(done)
        # The rest of the first answer never reaches the caller; the second one does.
        second = await h.next(ResponseDone, h.out.index(done) + 1)
        assert second == ResponseDone("gemini_2")
        heard_ms = 600.0
        await h.inbox.send(TruncateResponse("gemini_1", heard_ms))
        await h.wait(lambda: bool(h.event("provider.truncated")))
        assert h.event("provider.truncated")[0].payload == {
            "response_id": "gemini_1",
            "heard_ms": heard_ms,
        }
        said = [i for i in h.provider.conversation if isinstance(i, AgentSaid) and i.interrupted]
        assert len(said) == 1 and len(said[0].text.split()) < len(long.split()) // 2
    sent_ms = [m for m in h.out if isinstance(m, AgentAudio) and m.response_id == "gemini_1"]
    assert sum(a.chunk.duration_ms for a in sent_ms) < len(fake_speech(long)) / 48


async def test_go_away_resumes_on_a_new_connection_without_losing_caller_audio(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeGeminiLive(
        Script(
            turns=(Turn(say="One.", caller_text="first"), Turn(say="Two.", caller_text="second"))
        ),
        go_away_after_turn=1,
    )
    async with running(fake) as h:
        await h.next(ResponseDone)
        await h.say("first question")
        await h.wait(lambda: len(h.of(ResponseDone)) >= 2)
        # The caller keeps talking through the switch (no gap in the audio stream).
        await h.silence(GO_AWAY_MS + 500)
        assert fake.connections == 2 and h.event("provider.resumed")
        assert h.event("provider.resumed")[0].payload["resumed"] is True
        await h.say("second question")
        await h.wait(lambda: len(h.of(ResponseDone)) >= 3)
        assert h.of(AgentTranscript)[-1].text == "Two."  # the session went on at turn 2
        assert not h.of(ProviderFailed)
    assert fake.setups[1].resume_handle is not None
    received = b"".join(m.data for m in fake.received if isinstance(m, wire.RealtimeAudio))
    resampler = Resampler(8000, 16000)
    expected = b"".join(pcm16_to_bytes(resampler.process(ulaw_decode(f))) for f in h.sent_audio)
    assert received == expected


async def test_a_conversation_is_seeded_and_answered_at_once_after_a_switch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeGeminiLive(Script(turns=(Turn(say="We open at nine."),)))
    conversation = (
        AgentSaid("Welcome."),
        CallerSaid("when do you open"),
        ToolRan("call_1", "lookup_hours", {}, "nine to five"),
    )
    async with running(fake, conversation=conversation, greet=False, respond_now=True) as h:
        done = await h.next(ResponseDone)
        assert done == ResponseDone("gemini_1")
        assert h.of(ResponseStarted) == [ResponseStarted("gemini_1", greeting=False)]
    (seed,) = [m for m in fake.received if isinstance(m, wire.ClientContent)]
    assert seed.turn_complete
    assert [t.role for t in seed.turns] == ["model", "user", "model"]
    assert "lookup_hours" in seed.turns[2].text and "must not be called again" in seed.turns[2].text


async def test_handshake_5xx_is_http_5xx(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeGeminiLive(Script(faults=(Fault("http_5xx", status=503),)))
    async with running(fake) as h:
        failed = await h.next(ProviderFailed)
        assert failed.kind == "http_5xx" and "503" in failed.detail
        assert not h.of(ProviderReady)


async def test_a_close_with_an_error_code_is_error_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeGeminiLive(Script(turns=(HOURS,), faults=(Fault("error_event", turn=1),)))
    async with running(fake) as h:
        await h.next(ResponseDone)
        await h.say("hello")
        failed = await h.next(ProviderFailed)
        assert failed.kind == "error_event" and "1011" in failed.detail


async def test_a_lost_connection_is_disconnect(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeGeminiLive(Script(turns=(HOURS,), faults=(Fault("drop", turn=1, after_messages=2),)))
    async with running(fake) as h:
        await h.next(ResponseDone)
        await h.say("hello")
        failed = await h.next(ProviderFailed)
        assert failed.kind == "disconnect"
        assert h.of(ResponseStarted)[-1].response_id == "gemini_1"  # it failed mid-answer


async def test_no_setup_complete_is_connect_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async def mute(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()
        await trio.sleep_forever()

    t0 = trio.current_time()
    async with running(handler=mute) as h:
        failed = await h.next(ProviderFailed)
        assert failed.kind == "connect_timeout"
        assert trio.current_time() - t0 == 10.0


async def test_a_stall_keeps_the_connection_open_and_silent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeGeminiLive(Script(faults=(Fault("stall", turn=0, after_audio_ms=300),)))
    async with running(fake) as h:
        await h.next(AgentAudio)
        await trio.sleep(30)
        audio_ms = sum(a.chunk.duration_ms for a in h.of(AgentAudio))
        assert 250 <= audio_ms <= 400
        assert not h.of(ResponseDone) and not h.of(ProviderFailed)  # the supervisor's to detect


async def test_slow_first_byte_delays_the_answer(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeGeminiLive(Script(faults=(Fault("slow_first_byte", turn=0, delay_ms=1500),)))
    t0 = trio.current_time()
    async with running(fake) as h:
        await h.next(ResponseStarted)
        assert trio.current_time() - t0 >= 1.5
        await h.next(ResponseDone)


def fake_speech(text: str) -> bytes:
    return speak_bytes(text, 24000)
