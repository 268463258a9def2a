"""What each provider instance sent, on the call's tape: every message, as it arrived.

A recorded call (``ctx.tape`` a :class:`RecordingTape`) against the fake
providers on Trio's MockClock. The trace of the call must hold each message a
provider instance sent, in order, with the time it arrived, named by the
instance (``<mode>#<generation>``), so a replay can play a provider back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from uuid import uuid4

import httpx
import trio
from provider_calls import place_call
from test_cascaded_adapter import AGENT as CASCADED_AGENT
from test_cascaded_adapter import HOURS, endpoints, speak, until

from switchboard.actors.context import PHONE_AUDIO, CallContext, EventSink
from switchboard.actors.local.assets import AssetRegistry
from switchboard.actors.messages import (
    AgentTranscript,
    CallEvent,
    ResponseDone,
    ToolCallRequested,
    ToolResult,
    ToProvider,
    ToSupervisor,
)
from switchboard.actors.providers import ProviderSetup, build_provider
from switchboard.actors.tape import RecordingTape
from switchboard.codecs.recording_format import Kind, Record, unpack_provider_event
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.testing import Fault, Script, Turn, memory_connector
from switchboard.testing.fake_chat import FakeChat
from switchboard.testing.fake_deepgram import FakeDeepgram
from switchboard.testing.fake_tts import FakeTTS
from switchboard.testing.speech import speak_bytes

FAILOVER_AGENT = parse_agent_yaml(
    "name: fo\ntenant: t\ngreeting: Thanks for calling the clinic.\n"
    "instructions: You are a receptionist.\nmode: openai-realtime\nfallback: [gemini-live]\n"
    "idle_timeout_seconds: 60\nintents: []\n"
)
LINE = "what are your opening hours"


def provider_messages(records: Sequence[Record]) -> list[tuple[float, str, str | bytes]]:
    """``(t_ms, source, raw)`` of each provider record, in tape order."""
    out = []
    for record in records:
        if record.kind is Kind.PROVIDER_EVENT:
            source, raw = unpack_provider_event(record.data)
            out.append((record.t_ms, source, raw))
    return out


def assert_in_time_order(messages: Sequence[tuple[float, str, str | bytes]]) -> None:
    times = [t for t, _, _ in messages]
    assert times == sorted(times)
    assert times[0] >= 0.0


async def test_every_message_of_each_provider_instance_is_on_the_tape_as_it_arrived(
    autojump_clock: trio.abc.Clock,
) -> None:
    call = await place_call(
        FAILOVER_AGENT,
        Script(
            greeting="Hello from the primary.",
            turns=(Turn(say="We are open from nine to five on weekdays.", caller_text=LINE),),
            faults=(Fault("stall", turn=1, after_audio_ms=600),),
        ),
        Script(turns=(Turn(say="We open at nine.", caller_text=LINE),)),
        lines=(LINE,),
        speak_at=(3.0,),
        hang_up_at=14.0,
        record=True,
    )
    tape = call.ctx.tape
    assert isinstance(tape, RecordingTape)
    messages = provider_messages(tape.take())
    assert_in_time_order(messages)
    sources = [source for _, source, _ in messages]
    # The first instance, then the one the failover started: never interleaved.
    assert sources == sorted(sources, key=["openai-realtime#1", "gemini-live#2"].index)
    openai = [json.loads(raw) for _, s, raw in messages if s == "openai-realtime#1"]
    gemini = [raw for _, s, raw in messages if s == "gemini-live#2"]
    # Every message the fakes sent, byte for byte (text frames as text, binary as bytes).
    assert openai == call.openai.sent
    assert gemini == call.gemini.sent
    assert all(isinstance(raw, bytes) for raw in gemini)
    # The messages arrived when the call's events say things happened: the switch falls
    # between the last message of the stalled instance and the first of the next.
    (switch,) = call.events("failover.switch")
    last_openai = max(t for t, s, _ in messages if s == "openai-realtime#1")
    first_gemini = min(t for t, s, _ in messages if s == "gemini-live#2")
    assert last_openai <= switch.t_ms <= first_gemini + 0.01  # event times are rounded


async def test_an_unrecorded_call_keeps_nothing_and_behaves_the_same(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script(greeting="Hello from the primary.", turns=(Turn(say="Hi.", caller_text=LINE),))
    call = await place_call(
        FAILOVER_AGENT, script, Script(), lines=(LINE,), speak_at=(3.0,), hang_up_at=8.0
    )
    assert not call.ctx.tape.enabled
    assert [e.payload["text"] for e in call.events("turn:agent")] == [
        "Hello from the primary.",
        "Hi.",
    ]


async def test_the_cascaded_stages_each_put_what_they_received_on_the_tape(
    autojump_clock: trio.abc.Clock,
) -> None:
    script = Script(turns=(HOURS,))
    fakes_stt, fakes_chat, fakes_tts = FakeDeepgram(script), FakeChat(script), FakeTTS(script)

    async def route(request: httpx.Request) -> httpx.Response:
        fake = fakes_chat if request.url.host == "llm.test" else fakes_tts
        return await fake.handler(request)

    t0 = trio.current_time()
    tape = RecordingTape(lambda: (trio.current_time() - t0) * 1000.0)
    ctx = CallContext(uuid4(), uuid4(), uuid4(), CASCADED_AGENT, t0, PHONE_AUDIO, tape=tape)
    seen: list[ToSupervisor] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
        setup = ProviderSetup(
            ctx,
            endpoints(),
            memory_connector(fakes_stt.handler),
            http,
            AssetRegistry(),
            source="cascaded#3",
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
            await until(from_provider, ResponseDone, seen)  # the greeting
            async with trio.open_nursery() as talk:
                talk.start_soon(speak, to_provider, LINE, 0.0)
                request = await until(from_provider, ToolCallRequested, seen)
                assert isinstance(request, ToolCallRequested)
                result = ToolResult(
                    request.call_id, request.name, True, "nine to five", request.response_id
                )
                await to_provider.send(result)
                answer = await until(from_provider, AgentTranscript, seen)
                await until(from_provider, ResponseDone, seen)
                talk.cancel_scope.cancel()
            await to_provider.aclose()
    assert isinstance(answer, AgentTranscript)

    messages = provider_messages(tape.take())
    assert_in_time_order(messages)
    assert {s for _, s, _ in messages} == {"cascaded#3/stt", "cascaded#3/llm", "cascaded#3/tts"}
    # Speech-to-text: Deepgram's JSON messages, with the caller's words among them.
    stt = [json.loads(raw) for _, s, raw in messages if s == "cascaded#3/stt"]
    finals = [m["channel"]["alternatives"][0]["transcript"] for m in stt if m.get("is_final")]
    assert " ".join(t for t in finals if t) == LINE
    # The LLM: each server-sent event's data; one [DONE] per request, the deltas the words.
    llm = [raw for _, s, raw in messages if s == "cascaded#3/llm"]
    assert llm.count("[DONE]") == len(fakes_chat.requests) == 2  # asked again after the tool
    chunks = [json.loads(raw) for raw in llm if raw != "[DONE]"]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert "We are open nine to five." in content
    # Text-to-speech: the streamed body, byte for byte.
    tts = b"".join(raw for _, s, raw in messages if s == "cascaded#3/tts")  # type: ignore[misc]
    assert tts == b"".join(speak_bytes(text, 24000) for text in fakes_tts.texts)
