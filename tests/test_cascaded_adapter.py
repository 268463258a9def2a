"""The ``cascaded`` provider against the three fakes, in memory, on Trio's MockClock.

Deepgram live over a real WebSocket (``memory_connector``), chat completions
and TTS over httpx (``MockTransport``). What a caller would notice: the
greeting and the answers are heard as phone audio, what they said is
transcribed, the hours come from the tool, and a provider that fails is
reported with the reason the failover needs instead of going silent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import httpx
import pytest
import trio
import trio_websocket
from openai.types.chat import ChatCompletionChunk

from switchboard.actors.context import PHONE_AUDIO, CallContext, EventSink
from switchboard.actors.local import tts
from switchboard.actors.local.assets import AssetRegistry
from switchboard.actors.messages import (
    AgentAudio,
    AgentTranscript,
    AudioChunk,
    CallerAudio,
    CallerText,
    CallerTranscript,
    CallEvent,
    ProviderFailed,
    ResponseDone,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    ToolResult,
    ToProvider,
    ToSupervisor,
)
from switchboard.actors.pipeline import Heard, StageFailed
from switchboard.actors.providers import Endpoints, ProviderSetup, build_provider
from switchboard.actors.providers.cascaded import DeepgramListener
from switchboard.codecs import deepgram_live as dg
from switchboard.codecs.chat_completions import SseDecoder
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.testing import Fault, Script, ToolStep, Turn, memory_connector
from switchboard.testing.fake_chat import FakeChat
from switchboard.testing.fake_deepgram import FakeDeepgram
from switchboard.testing.fake_tts import FakeTTS

AGENT = parse_agent_yaml(
    "name: t\ntenant: t\ngreeting: Thanks for calling.\nintents: []\nmode: cascaded\n"
    "instructions: You are the receptionist of Bright Smile Dental.\n"
    "providers:\n  cascaded: {llm_model: fake-llama}\n"
)
HOURS = Turn(
    caller_text="what are your opening hours",
    say="Let me check.",
    tool=ToolStep("lookup_hours"),
    then_say="We are open nine to five.",
)
FRAME = 160  # 20 ms of G.711 at 8 kHz


@dataclass
class Fakes:
    stt: FakeDeepgram
    chat: FakeChat
    tts: FakeTTS
    received: list[ToSupervisor] = field(default_factory=list)


def endpoints(tts_base: str = "http://tts.test/v1") -> Endpoints:
    return Endpoints(
        stt_url="wss://stt.test/v1/listen",
        stt_api_key="dg-key",
        llm_base_url="http://llm.test/v1",
        llm_api_key="llm-key",
        tts_base_url=tts_base,
    )


@asynccontextmanager
async def provider(
    stt: Script | None = None,
    chat: Script | None = None,
    speech: Script | None = None,
    *,
    tts_base: str = "http://tts.test/v1",
) -> AsyncIterator[
    tuple[Fakes, trio.MemorySendChannel[ToProvider], trio.MemoryReceiveChannel[ToSupervisor]]
]:
    fakes = Fakes(
        FakeDeepgram(stt or Script()), FakeChat(chat or Script()), FakeTTS(speech or Script())
    )

    async def route(request: httpx.Request) -> httpx.Response:
        fake = fakes.chat if request.url.host == "llm.test" else fakes.tts
        return await fake.handler(request)

    ctx = CallContext(uuid4(), uuid4(), uuid4(), AGENT, trio.current_time(), PHONE_AUDIO)
    async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
        setup = ProviderSetup(
            ctx, endpoints(tts_base), memory_connector(fakes.stt.handler), http, AssetRegistry()
        )
        run = build_provider("cascaded", setup)
        to_provider, inbox = trio.open_memory_channel[ToProvider](64)
        outbox, from_provider = trio.open_memory_channel[ToSupervisor](10_000)
        events, _ = trio.open_memory_channel[CallEvent](10_000)
        async with trio.open_nursery() as nursery:

            async def go() -> None:
                async with outbox:
                    await run(inbox, outbox, EventSink(ctx, events))

            nursery.start_soon(go)
            yield fakes, to_provider, from_provider
            await to_provider.aclose()


async def speak(inbox: trio.MemorySendChannel[ToProvider], text: str, at_ms: float) -> float:
    """Send ``text`` as a caller would (20 ms frames in real time), then 1.5 s of silence."""
    audio = tts.synthesize_ulaw(text) + b"\xff" * (8000 * 3 // 2)
    for start in range(0, len(audio) - FRAME + 1, FRAME):
        await inbox.send(CallerAudio(AudioChunk(audio[start : start + FRAME], "pcmu", 8000), at_ms))
        at_ms += 20
        await trio.sleep(0.02)
    return at_ms


async def until(
    outbox: trio.MemoryReceiveChannel[ToSupervisor], kind: type, seen: list[ToSupervisor]
) -> ToSupervisor:
    with trio.fail_after(30):
        async for message in outbox:
            seen.append(message)
            if isinstance(message, kind):
                return message
    raise AssertionError(f"the provider ended before {kind.__name__}: {seen[-3:]}")


async def test_greeting_a_transcribed_turn_and_a_tool_call_through_the_three_fakes(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script(turns=(HOURS,))
    seen: list[ToSupervisor] = []
    async with provider(script, script, script) as (fakes, inbox, outbox):
        greeting = await until(outbox, AgentTranscript, seen)
        await until(outbox, ResponseDone, seen)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(speak, inbox, "what are your opening hours", 0.0)
            heard = await until(outbox, CallerTranscript, seen)
            request = await until(outbox, ToolCallRequested, seen)
            assert isinstance(request, ToolCallRequested)
            await inbox.send(
                ToolResult(request.call_id, request.name, True, "nine to five", request.response_id)
            )
            answer = await until(outbox, AgentTranscript, seen)
            await until(outbox, ResponseDone, seen)
    assert isinstance(greeting, AgentTranscript) and greeting.text == "Thanks for calling."
    assert isinstance(heard, CallerTranscript) and heard.text == "what are your opening hours"
    # Deepgram's SpeechStarted reaches the supervisor first: the barge-in signal.
    speech = [m for m in seen if isinstance(m, SpeechStarted | CallerTranscript)]
    assert isinstance(speech[0], SpeechStarted) and 0 < speech[0].offset_ms < heard.start_ms + 500
    assert request.name == "lookup_hours" and request.call_id == "call_fake1"
    assert isinstance(answer, AgentTranscript)
    assert answer.text == "Let me check. We are open nine to five."
    audio = [m.chunk for m in seen if isinstance(m, AgentAudio)]
    assert audio and all(c.encoding == "pcmu" and c.sample_rate == 8000 for c in audio)
    assert sum(c.duration_ms for c in audio) > 3000  # three sentences spoken
    assert fakes.tts.texts == ["Thanks for calling.", "Let me check.", "We are open nine to five."]

    # What went over the wire.
    query = fakes.stt.queries[0]
    assert (query["encoding"], query["sample_rate"], query["model"]) == ("mulaw", "8000", "nova-3")
    assert fakes.stt.headers[0]["authorization"] == "Token dg-key"
    first, second = fakes.chat.requests
    assert first["model"] == "fake-llama" and first["stream"] is True
    assert "Bright Smile Dental" in first["messages"][0]["content"]
    assert [m["role"] for m in first["messages"]] == ["system", "assistant", "user"]
    assert [t["function"]["name"] for t in first["tools"]] == ["lookup_hours", "hangup_call"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "lookup_hours"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_fake1",
        "content": "nine to five",
    }
    assert fakes.chat.headers[0]["authorization"] == "Bearer llm-key"


async def test_deepgram_speak_is_used_when_the_tts_url_is_deepgrams(
    autojump_clock: trio.abc.Clock,
) -> None:
    seen: list[ToSupervisor] = []
    async with provider(tts_base="http://tts.test/v1/speak") as (fakes, _, outbox):
        await until(outbox, ResponseDone, seen)
    assert fakes.tts.texts == ["Thanks for calling."]
    assert "authorization" not in fakes.tts.headers[0]  # no TTS_API_KEY: no header
    audio_ms = sum(m.chunk.duration_ms for m in seen if isinstance(m, AgentAudio))
    expected_ms = 1000 * len(tts.synthesize_at("Thanks for calling.", 8000)) / 8000
    assert audio_ms == pytest.approx(expected_ms, rel=0.1)


@pytest.mark.parametrize(
    ("stage", "fault", "kind"),
    [
        ("stt", Fault("http_5xx", status=503), "http_5xx"),
        ("stt", Fault("error_event", turn=1), "error_event"),
        ("stt", Fault("drop", turn=1), "disconnect"),
        ("chat", Fault("http_5xx", turn=1, status=502), "http_5xx"),
        ("chat", Fault("error_event", turn=1), "error_event"),
        ("chat", Fault("drop", turn=1, after_messages=2), "disconnect"),
        ("tts", Fault("http_5xx", turn=1), "http_5xx"),
        ("tts", Fault("drop", turn=1, after_messages=1), "disconnect"),
    ],
)
async def test_a_failing_stage_is_reported_with_the_kind_failover_needs(
    autojump_clock: trio.abc.Clock, stage: str, fault: Fault, kind: str
) -> None:
    scripts = {
        s: Script(turns=(Turn(caller_text="hello", say="Hi there."),))
        for s in ("stt", "chat", "tts")
    }
    scripts[stage] = Script(turns=scripts[stage].turns, faults=(fault,))
    seen: list[ToSupervisor] = []
    async with (
        provider(scripts["stt"], scripts["chat"], scripts["tts"]) as (_, inbox, outbox),
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(speak, inbox, "hello there", 0.0)
        failed = await until(outbox, ProviderFailed, seen)
        nursery.cancel_scope.cancel()
    assert isinstance(failed, ProviderFailed)
    assert (failed.provider, failed.kind) == ("cascaded", kind), failed.detail


async def test_fake_chat_streams_chunks_the_openai_sdk_accepts(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = FakeChat(Script(turns=(HOURS,)))
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as http:
        bodies = []
        for messages in (
            [{"role": "user", "content": "hours?"}],
            [
                {"role": "user", "content": "hours?"},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "tool_call_id": "call_fake1", "content": "9-5"},
            ],
        ):
            response = await http.post(
                "http://llm.test/v1/chat/completions",
                json={"model": "m", "messages": messages, "stream": True},
            )
            bodies.append(response.content)
    for body in bodies:
        events = SseDecoder().feed(body)
        assert events[-1].data == "[DONE]"
        chunks = [ChatCompletionChunk.model_validate_json(e.data) for e in events[:-1]]
        assert all(c.object == "chat.completion.chunk" for c in chunks)
    first = [
        ChatCompletionChunk.model_validate_json(e.data) for e in SseDecoder().feed(bodies[0])[:-1]
    ]
    text = "".join(c.choices[0].delta.content or "" for c in first)
    calls = [tc for c in first for tc in (c.choices[0].delta.tool_calls or [])]
    assert text == "Let me check."
    assert calls[0].function and calls[0].function.name == "lookup_hours"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls if tc.function)) == {}
    assert first[-1].choices[0].finish_reason == "tool_calls"
    second = [
        ChatCompletionChunk.model_validate_json(e.data) for e in SseDecoder().feed(bodies[1])[:-1]
    ]
    assert "".join(c.choices[0].delta.content or "" for c in second) == "We are open nine to five."


async def test_fake_tts_speaks_raw_pcm_the_length_of_the_text(
    autojump_clock: trio.abc.Clock,
) -> None:
    fake = FakeTTS()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as http:
        openai = await http.post(
            "http://tts.test/v1/audio/speech",
            json={"model": "m", "input": "Hello.", "voice": "alloy", "response_format": "pcm"},
        )
        deepgram = await http.post(
            "http://tts.test/v1/speak?model=aura-2-thalia-en&encoding=linear16&sample_rate=24000",
            json={"text": "Hello."},
        )
        wrong = await http.post(
            "http://tts.test/v1/audio/speech",
            json={"model": "m", "input": "Hello.", "voice": "alloy", "response_format": "mp3"},
        )
    assert openai.status_code == 200 and len(openai.content) > 24000 * 2 // 4  # over 250 ms
    assert deepgram.content[:4] == b"RIFF" and deepgram.content[44:] == openai.content
    assert wrong.status_code == 400
    assert parse_qs(urlsplit(str(deepgram.url)).query)["encoding"] == ["linear16"]


async def test_final_pieces_are_joined_until_utterance_end_and_a_1011_close_is_an_error_event(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def deepgram(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()  # the first audio frame
        for frame in (
            dg.encode_speech_started(0.2),
            dg.encode_results("what are", 0.2, 0.6, is_final=False, speech_final=False),
            dg.encode_results("what are", 0.2, 0.7, is_final=True, speech_final=False),
            dg.encode_results("your hours", 0.9, 0.8, is_final=True, speech_final=False),
            dg.encode_speech_started(3.0),  # noise: no words follow
            dg.encode_utterance_end(1.7),
        ):
            await ws.send_message(frame)
        await trio.sleep(1)
        await ws.aclose(1011, "NET-0001")

    listener = DeepgramListener(memory_connector(deepgram), "wss://stt.test/v1/listen", None)
    audio_send, audio = trio.open_memory_channel[CallerAudio](10)
    heard: list[Heard] = []

    async def record(event: Heard) -> None:
        heard.append(event)

    await audio_send.send(CallerAudio(AudioChunk(b"\xff" * FRAME, "pcmu", 8000), 1000.0))
    # (raised from the listener's tasks, so grouped; the pipeline finds it with except*)
    with pytest.RaisesGroup(
        pytest.RaisesExc(
            StageFailed, check=lambda e: e.kind == "error_event" and "NET-0001" in e.detail
        ),
        flatten_subgroups=True,
    ):
        await listener(audio, record)
    assert heard == [
        SpeechStarted(1200.0),
        SpeechStarted(4000.0),
        SpeechStopped(2700.0),
        CallerTranscript("what are your hours", 1200.0, 2700.0),
    ]


async def test_a_typed_line_goes_to_the_llm_as_the_users_message_and_is_spoken(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script(turns=(Turn(say="We are open nine to five."),))
    seen: list[ToSupervisor] = []
    async with provider(script, script, script) as (fakes, inbox, outbox):
        await until(outbox, ResponseDone, seen)  # the greeting
        await inbox.send(CallerText("when are you open"))
        answer = await until(outbox, AgentTranscript, seen)
        await until(outbox, ResponseDone, seen)
    assert isinstance(answer, AgentTranscript) and answer.text == "We are open nine to five."
    (request,) = fakes.chat.requests
    assert request["messages"][1:] == [
        {"role": "assistant", "content": "Thanks for calling."},
        {"role": "user", "content": "when are you open"},
    ]
    assert fakes.tts.texts == ["Thanks for calling.", "We are open nine to five."]
    # The supervisor logs the typed turn: the provider reports no transcript of its own.
    assert not any(isinstance(m, CallerTranscript) for m in seen)
