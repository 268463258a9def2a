"""The openai-realtime provider against the fake OpenAI Realtime server, on Trio's MockClock.

What a caller (or the supervisor acting for them) would notice: the greeting
is spoken, phone audio passes through byte for byte, the caller's words and
the agent's answers arrive as transcripts, a tool call is answered and the
answer goes on, a barge-in cuts the answer where the caller stopped hearing
it, and each way the provider can fail is reported as the right failure.
Every event either side put on the wire is checked against the ``openai``
package's published types.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio_websocket
from openai_realtime_harness import (
    AGENT,
    Harness,
    caller_speech,
    check_wire,
    received,
    start,
)

from switchboard.actors.context import AudioFormat
from switchboard.actors.messages import (
    AgentAudio,
    AgentSaid,
    AgentTranscript,
    CallerSaid,
    CallerTranscript,
    CallerUnheard,
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
    TruncateResponse,
)
from switchboard.actors.providers import connect_websocket
from switchboard.codecs import openai_realtime as wire
from switchboard.testing import Fault, Script, ToolStep, Turn, memory_connector, serve
from switchboard.testing.fake_openai_realtime import FakeOpenAIRealtime

HOURS = Turn(
    caller_text="when are you open",
    say="Let me check.",
    tool=ToolStep("lookup_hours", {}),
    then_say="We are open nine to five on weekdays.",
)
LONG = (
    "Our clinic offers cleanings, fillings, crowns, whitening and emergency care, "
    "and we accept most insurance plans from all the major providers in the area."
)


def sent_audio(fake: FakeOpenAIRealtime, response_id: str) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"])
        for e in fake.sent
        if e["type"] == "response.output_audio.delta" and e["response_id"] == response_id
    )


async def test_phone_greeting_passes_mulaw_through_and_configures_the_session(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(Script(greeting="Thanks for calling the test clinic."))
    h = await start(nursery, fake, api_key="sk-test")
    done = await h.wait_for(ResponseDone)
    started = h.of(ResponseStarted)
    assert [s.greeting for s in started] == [True]
    assert done == ResponseDone(started[0].response_id, interrupted=False)
    assert h.of(ProviderReady) == [ProviderReady("openai-realtime")]
    assert h.of(AgentTranscript) == [
        AgentTranscript("Thanks for calling the test clinic.", started[0].response_id)
    ]
    audio = h.of(AgentAudio)
    assert {(a.chunk.encoding, a.chunk.sample_rate) for a in audio} == {("pcmu", 8000)}
    heard = b"".join(a.chunk.data for a in audio)
    assert heard == sent_audio(fake, started[0].response_id)  # untouched
    assert len(heard) > 8000  # more than a second of speech

    (request,) = fake.requests
    assert request.path == "/v1/realtime?model=gpt-realtime"
    assert request.headers["authorization"] == "Bearer sk-test"
    (update,) = received(fake, "session.update")
    session = update["session"]
    assert session["type"] == "realtime"
    assert session["instructions"] == "You are a receptionist."
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"] == {"format": {"type": "audio/pcmu"}, "voice": "marin"}
    assert session["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert session["audio"]["input"]["transcription"]["model"]
    assert [t["name"] for t in session["tools"]] == [
        "lookup_hours",
        "transfer_to_human",
        "hangup_call",
    ]
    assert all(t["type"] == "function" for t in session["tools"])
    (create,) = received(fake, "response.create")
    assert "Thanks for calling the test clinic." in create["response"]["instructions"]
    check_wire(fake)


async def test_no_key_no_authorization_header(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(Script())
    h = await start(nursery, fake, api_key=None)
    await h.wait_for(ResponseDone)
    assert "authorization" not in fake.requests[0].headers


async def test_browser_audio_is_pcm16_24k_on_the_wire_and_the_callers_rate_in_the_call(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fmt = AudioFormat("pcm16", 16000)
    fake = FakeOpenAIRealtime(Script(turns=(Turn(caller_text="hello", say="Hello there."),)))
    h = await start(nursery, fake, caller_format=fmt)
    greeting_done = await h.wait_for(ResponseDone)
    session = received(fake, "session.update")[0]["session"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}

    audio = [a.chunk for a in h.of(AgentAudio) if a.response_id == greeting_done.response_id]
    assert {(c.encoding, c.sample_rate) for c in audio} == {("pcm16", 16000)}
    wire_ms = len(sent_audio(fake, greeting_done.response_id)) / 2 / 24
    # the same duration, give or take the resampler's delay (at most 3.75 ms)
    assert sum(c.duration_ms for c in audio) == pytest.approx(wire_ms, abs=4.0)

    line = caller_speech("hello there", fmt)
    await h.say(line, fmt)
    transcript = await h.wait_for(CallerTranscript)
    assert transcript.text == "hello"
    appended = sum(
        len(base64.b64decode(e["audio"])) for e in received(fake, "input_audio_buffer.append")
    )
    assert appended == pytest.approx(len(line) * 24 / 16, abs=64)  # resampled to 24 kHz
    await h.wait_for(ResponseDone, 2)
    check_wire(fake)


async def test_a_caller_turn_gives_speech_events_transcripts_and_an_answer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    turn = Turn(caller_text="do you take new patients", say="Yes, we do.")
    fake = FakeOpenAIRealtime(Script(turns=(turn,)))
    h = await start(nursery, fake)
    await h.wait_for(ResponseDone)
    h.caller_ms = 5000.0  # the call's caller audio timeline, not the provider's
    await h.say(caller_speech("do you take new patients"))
    answer = await h.wait_for(ResponseDone, 2)
    (started,) = h.of(SpeechStarted)
    (stopped,) = h.of(SpeechStopped)
    (said,) = h.of(CallerTranscript)
    assert said.text == "do you take new patients"
    assert 5000 <= started.offset_ms < stopped.offset_ms < h.caller_ms
    assert (said.start_ms, said.end_ms) == (started.offset_ms, stopped.offset_ms)
    assert [s.greeting for s in h.of(ResponseStarted)] == [True, False]
    assert h.of(AgentTranscript)[-1] == AgentTranscript("Yes, we do.", answer.response_id)
    assert not answer.interrupted
    assert h.index(said) < h.index(h.of(ResponseStarted)[1])
    check_wire(fake)


async def test_a_tool_call_is_answered_and_the_answer_goes_on_as_one_response(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(Script(turns=(HOURS,)))
    h = await start(nursery, fake)
    await h.wait_for(ResponseDone)
    await h.say(caller_speech("when are you open"))
    call = await h.wait_for(ToolCallRequested)
    assert (call.name, dict(call.arguments)) == ("lookup_hours", {})
    answer_id = h.of(ResponseStarted)[1].response_id
    assert call.response_id == answer_id
    assert len(h.of(ResponseDone)) == 1  # the answer waits for the tool
    await trio.sleep(0.3)  # a tool that takes its time
    assert len(h.of(ResponseDone)) == 1
    await h.to_provider.send(
        ToolResult(call.call_id, call.name, True, "Monday to Friday, 9 to 5", answer_id)
    )
    done = await h.wait_for(ResponseDone, 2)
    assert done == ResponseDone(answer_id, interrupted=False)
    assert len(h.of(ResponseStarted)) == 2  # the follow-up is part of the same answer
    assert h.of(AgentTranscript)[-1] == AgentTranscript(
        "Let me check. We are open nine to five on weekdays.", answer_id
    )
    types = fake.received_types()
    output_at = types.index("conversation.item.create")
    assert types[output_at + 1] == "response.create"
    item = fake.received[output_at]["item"]
    assert item == {
        "type": "function_call_output",
        "call_id": call.call_id,
        "output": "Monday to Friday, 9 to 5",
    }
    later = [a for a in h.of(AgentAudio) if h.index(a) > h.index(call)]
    assert later and {a.response_id for a in later} == {answer_id}
    check_wire(fake)


async def test_truncate_cuts_the_heard_audio_and_cancels_the_running_answer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(Script(greeting=LONG))
    h = await start(nursery, fake)
    await h.wait_for(AgentAudio, 5)
    greeting = h.of(ResponseStarted)[0].response_id
    await h.to_provider.send(TruncateResponse(greeting, heard_ms=350.7))
    done = await h.wait_for(ResponseDone)
    assert done == ResponseDone(greeting, interrupted=True)
    (item_id,) = {e["item_id"] for e in fake.sent if e["type"] == "response.output_audio.delta"}
    assert fake.truncations == [
        {"connection": 1, "item_id": item_id, "content_index": 0, "audio_end_ms": 350}
    ]
    assert received(fake, "response.cancel") == [
        {"type": "response.cancel", "response_id": greeting}
    ]
    assert [e for e in fake.sent if e["type"] == "error"] == []  # the fake accepted both
    assert [(e.type, dict(e.payload)) for e in h.events] == [
        (
            "provider.truncated",
            {"response_id": greeting, "item_id": item_id, "audio_end_ms": 350},
        )
    ]
    sent_ms = len(sent_audio(fake, greeting)) / 8
    assert sent_ms < len(caller_speech(LONG, silence_ms=0)) / 8 / 2  # stopped early
    await trio.sleep(1)
    assert all(h.index(a) < h.index(done) for a in h.of(AgentAudio))  # nothing after the cut
    check_wire(fake)


async def test_truncate_after_the_answer_ended_only_cuts_the_record(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(Script())
    h = await start(nursery, fake)
    done = await h.wait_for(ResponseDone)
    await h.to_provider.send(TruncateResponse(done.response_id, heard_ms=200))
    with trio.fail_after(5):
        while not fake.truncations:
            await trio.sleep(0.01)
    assert fake.truncations[0]["audio_end_ms"] == 200
    await trio.sleep(1)
    assert received(fake, "response.cancel") == []
    assert h.of(ResponseDone) == [done]  # not reported twice


async def test_the_caller_talking_over_the_agent_interrupts_the_answer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(Script(greeting=LONG))
    h = await start(nursery, fake)
    await h.wait_for(AgentAudio, 3)
    await h.say(caller_speech("sorry, can I ask something"))
    barge = await h.wait_for(SpeechStarted)
    done = await h.wait_for(ResponseDone)
    assert done.interrupted and h.index(barge) < h.index(done)
    cancelled = next(e for e in fake.sent if e["type"] == "response.done")
    assert cancelled["response"]["status"] == "cancelled"
    assert cancelled["response"]["status_details"]["reason"] == "turn_detected"
    check_wire(fake)


async def test_after_a_switch_the_conversation_is_seeded_and_answered_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    conversation = (
        CallerSaid("when are you open"),
        ToolRan("call_1", "lookup_hours", {}, "Monday to Friday, 9 to 5"),
        AgentSaid("We are open Monday to", interrupted=True),
        CallerSaid("and on saturday?"),
    )
    fake = FakeOpenAIRealtime(Script(turns=(Turn(say="Closed on Saturdays."),)))
    h = await start(nursery, fake, greet=False, respond_now=True, conversation=conversation)
    await h.wait_for(ResponseDone)
    assert [s.greeting for s in h.of(ResponseStarted)] == [False]
    items = [e["item"] for e in received(fake, "conversation.item.create")]
    assert items == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "when are you open"}],
        },
        {"type": "function_call", "call_id": "call_1", "name": "lookup_hours", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "Monday to Friday, 9 to 5"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "We are open Monday to"}],
        },
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "and on saturday?"}],
        },
    ]
    assert fake.received_types()[-1] == "response.create"
    assert h.of(ToolCallRequested) == []  # the tool that ran is not run again
    check_wire(fake)


async def test_a_lost_caller_turn_is_seeded_and_the_model_asked_to_have_it_repeated(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    conversation = (AgentSaid("Hello."), CallerUnheard("Sorry, I didn't catch that."))
    fake = FakeOpenAIRealtime(Script(turns=(Turn(say="Sorry, I didn't catch that."),)))
    h = await start(nursery, fake, greet=False, respond_now=True, conversation=conversation)
    await h.wait_for(ResponseDone)
    assert [s.greeting for s in h.of(ResponseStarted)] == [False]
    items = [e["item"] for e in received(fake, "conversation.item.create")]
    assert items[-1]["role"] == "user" and "lost on the line" in json.dumps(items[-1])
    (create,) = received(fake, "response.create")
    assert "saying exactly this" in create["response"]["instructions"]
    assert "Sorry, I didn't catch that." in create["response"]["instructions"]
    # Later, the runtime asks for a response about what it learned (RespondNow).
    await h.to_provider.send(RespondNow("The transfer did not go through.", "Sorry."))
    await h.wait_for(ResponseDone, 2)
    note = [e["item"] for e in received(fake, "conversation.item.create")][-1]
    assert note["role"] == "system" and "did not go through" in json.dumps(note)
    assert fake.received_types()[-1] == "response.create"
    check_wire(fake)


async def test_the_beta_dialect_works_too(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(Script(greeting="Hello from the beta."))
    inner = memory_connector(fake.handler)

    def beta(url: str, headers: Sequence[tuple[str, str]]) -> Any:
        return inner(url, [*headers, ("OpenAI-Beta", "realtime=v1")])

    h = await start(nursery, fake, connect=beta)
    done = await h.wait_for(ResponseDone)
    assert "response.audio.delta" in {e["type"] for e in fake.sent}
    assert h.of(AgentTranscript) == [AgentTranscript("Hello from the beta.", done.response_id)]
    assert b"".join(a.chunk.data for a in h.of(AgentAudio)) == sent_audio_beta(fake)
    check_wire(fake, beta=True)


def sent_audio_beta(fake: FakeOpenAIRealtime) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"]) for e in fake.sent if e["type"] == "response.audio.delta"
    )


# -- failures --------------------------------------------------------------------------------


async def failure(h: Harness) -> ProviderFailed:
    failed = await h.wait_for(ProviderFailed)
    with trio.fail_after(5):
        await h.done.wait()  # and the provider ended
    return failed


async def test_handshake_refused_with_5xx_is_http_5xx(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(Script(faults=(Fault("http_5xx", status=503),)))
    h = await start(nursery, fake)
    failed = await failure(h)
    assert failed.kind == "http_5xx" and "503" in failed.detail
    assert h.of(ResponseStarted) == []


async def test_handshake_refused_with_401_is_an_error_event_naming_the_status(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def refuse(request: trio_websocket.WebSocketRequest) -> None:
        await request.reject(401, body=b'{"error": {"message": "Incorrect API key"}}')

    h = await start(nursery, FakeOpenAIRealtime(Script()), connect=memory_connector(refuse))
    failed = await failure(h)
    assert failed.kind == "error_event" and "401" in failed.detail


async def test_a_server_error_event_is_an_error_event_failure(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(
        Script(turns=(Turn(say="fine"),), faults=(Fault("error_event", turn=1),))
    )
    h = await start(nursery, fake)
    await h.wait_for(ResponseDone)  # the greeting is fine
    await h.say(caller_speech("hello"))
    failed = await failure(h)
    assert failed.kind == "error_event" and "server_error" in failed.detail
    assert h.index(failed) > h.index(h.of(CallerTranscript)[0])
    check_wire(fake)


async def test_a_client_error_event_is_logged_and_the_call_goes_on(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(Script(turns=(Turn(say="Still here."),)))
    h = await start(nursery, fake)
    await h.wait_for(ResponseDone)
    # What OpenAI says to a truncate of an item it no longer has:
    await fake.push(
        wire.ErrorEvent(
            error_type="invalid_request_error",
            code="item_not_found",
            message="Item with item_id 'item_0001' not found.",
            client_event_id="event_1",
        )
    )
    await h.say(caller_speech("are you there"))
    answer = await h.wait_for(ResponseDone, 2)
    assert h.of(AgentTranscript)[-1].text == "Still here." and not answer.interrupted
    assert h.of(ProviderFailed) == []


async def test_a_dropped_connection_is_a_disconnect(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(Script(faults=(Fault("drop", turn=0, after_messages=4),)))
    h = await start(nursery, fake)
    failed = await failure(h)
    assert failed.kind == "disconnect" and "1011" in failed.detail
    assert h.of(ResponseDone) == []


async def test_an_unreachable_server_is_a_disconnect(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    @asynccontextmanager
    async def unreachable(
        url: str, headers: Sequence[tuple[str, str]]
    ) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        raise OSError(111, "Connection refused")
        yield  # pragma: no cover

    h = await start(nursery, FakeOpenAIRealtime(Script()), connect=unreachable)
    failed = await failure(h)
    assert failed.kind == "disconnect" and "refused" in failed.detail


async def test_a_stall_is_silence_not_a_failure_report(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The supervisor detects stalls; the adapter must not invent a failure or an end."""
    fake = FakeOpenAIRealtime(Script(greeting=LONG, faults=(Fault("stall", after_audio_ms=300),)))
    h = await start(nursery, fake)
    await h.wait_for(AgentAudio)
    await trio.sleep(30)
    ms = sum(a.chunk.duration_ms for a in h.of(AgentAudio))
    assert 300 <= ms <= 400
    assert h.of(ResponseDone) == [] and h.of(ProviderFailed) == []
    assert not h.done.is_set()


async def test_slow_first_byte_delays_the_answer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeOpenAIRealtime(Script(faults=(Fault("slow_first_byte", delay_ms=1500),)))
    t0 = trio.current_time()
    h = await start(nursery, fake)
    started = await h.wait_for(ResponseStarted)
    assert h.at(started) - t0 >= 1.5
    await h.wait_for(ResponseDone)
    assert AGENT.greeting  # the agent's greeting was asked for; the fake says its own


# -- the real connector, on loopback (no MockClock: real sockets) ----------------------------


async def test_over_real_sockets_5xx_and_unreachable_are_told_apart(nursery: trio.Nursery) -> None:
    fake = FakeOpenAIRealtime(Script(faults=(Fault("http_5xx", status=502),)))
    port = await nursery.start(serve, fake.handler)
    with trio.fail_after(10):
        refused = await failure(await start(nursery, fake, connect=connect_websocket, port=port))
    assert refused.kind == "http_5xx" and "502" in refused.detail

    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    closed_port = listener.socket.getsockname()[1]
    await listener.aclose()  # nothing listens there any more
    with trio.fail_after(10):
        gone = await failure(
            await start(nursery, fake, connect=connect_websocket, port=closed_port)
        )
    assert gone.kind == "disconnect"
