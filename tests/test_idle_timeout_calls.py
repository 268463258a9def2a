"""The idle timeout through the real call nursery, on Trio's MockClock, per provider.

A caller who is talking is never hung up on for silence, whichever provider
hears them: each reports caller speech its own way (OpenAI Realtime: server
VAD speech events; Gemini Live: only pieces of input transcription while the
caller speaks). A caller who has gone quiet still is, ``idle_timeout_seconds``
after they last spoke.
"""

from __future__ import annotations

from uuid import uuid4

import pytest
import trio
from call_harness import FakeTwilio, MemoryStore, transport_for
from provider_calls import place_call

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.idle_timer import MAX_UTTERANCE_S
from switchboard.actors.messages import Outbox, ProviderReady, SpeechStarted, ToProvider
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.call import CallResources, run_call
from switchboard.testing import Script, Turn
from switchboard.testing.speech import speak

IDLE_S = 8
LONG_LINE = (
    "I would like to book a cleaning for my daughter and my son next week ideally on "
    "Tuesday or Wednesday afternoon after school because they both have exams on Monday "
    "and Thursday and the dentist we saw last time said they should come back every six months"
)
SHORT_LINES = ("what are your opening hours", "can I book a cleaning", "is there parking")


def agent(mode: str) -> object:
    return parse_agent_yaml(
        "name: idle\ntenant: t\ngreeting: Thanks for calling the clinic.\n"
        f"instructions: You are a receptionist.\nmode: {mode}\n"
        f"idle_timeout_seconds: {IDLE_S}\nintents: []\n"
    )


def script() -> Script:
    return Script(
        greeting="Thanks for calling the clinic.",
        turns=(
            Turn(say="Sure, let me see.", caller_text=LONG_LINE),
            *(Turn(say=f"Answer {n}.", caller_text=line) for n, line in enumerate(SHORT_LINES)),
        ),
    )


@pytest.mark.parametrize("mode", ["gemini-live", "openai-realtime"])
async def test_a_caller_talking_longer_than_the_idle_timeout_is_not_hung_up_on(
    autojump_clock: trio.abc.Clock, mode: str
) -> None:
    long_s = len(speak(LONG_LINE, 8000)) / 8000
    assert long_s > IDLE_S + 2  # one utterance, longer than the idle timeout
    call = await place_call(
        agent(mode),  # type: ignore[arg-type]
        script(),
        script(),
        lines=(LONG_LINE,),
        speak_at=(2.0,),
        hang_up_at=60.0,
    )
    said_until = call.ctx.t0 + 2.0 + long_s
    # The caller was heard to the end and answered.
    assert [e.payload["text"] for e in call.events("turn:user")] == [LONG_LINE]
    assert "Sure, let me see." in [e.payload["text"] for e in call.events("turn:agent")]
    # Then they went quiet: the call ends idle_timeout_seconds after their last words,
    # not idle_timeout_seconds after the call (or their utterance) began.
    (ending,) = call.events("call.ending")
    assert ending.payload["reason"] == f"no caller speech for {IDLE_S} s"
    assert said_until + IDLE_S <= call.at(ending) <= said_until + IDLE_S + 1.5


@pytest.mark.parametrize("mode", ["gemini-live", "openai-realtime"])
async def test_a_caller_in_conversation_is_hung_up_on_only_once_they_stop_speaking(
    autojump_clock: trio.abc.Clock, mode: str
) -> None:
    spoken = [2.0 + 6.0 * n for n in range(len(SHORT_LINES))]  # every 6 s: always under 8 s
    call = await place_call(
        agent(mode),  # type: ignore[arg-type]
        Script(turns=script().turns[1:]),
        Script(turns=script().turns[1:]),
        lines=SHORT_LINES,
        speak_at=spoken,
        hang_up_at=60.0,
    )
    assert [e.payload["text"] for e in call.events("turn:user")] == list(SHORT_LINES)
    answers = [e.payload["text"] for e in call.events("turn:agent")][1:]
    assert answers == ["Answer 0.", "Answer 1.", "Answer 2."]
    (ending,) = call.events("call.ending")
    last_said = call.ctx.t0 + spoken[-1] + len(speak(SHORT_LINES[-1], 8000)) / 8000
    assert last_said + IDLE_S <= call.at(ending) <= last_said + IDLE_S + 1.5


async def test_a_speech_start_that_never_ends_holds_the_idle_timer_only_so_long(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Noise a provider took for speech, with no end: the call still ends, after
    MAX_UTTERANCE_S plus the idle timeout, not at max_call_seconds."""
    import switchboard.orchestrator.call as call_module

    async def deaf_after_a_start(
        inbox: trio.MemoryReceiveChannel[ToProvider], outbox: Outbox, events: EventSink
    ) -> None:
        await outbox.send(ProviderReady("noisy"))
        await outbox.send(SpeechStarted(offset_ms=1000.0))
        async for _ in inbox:
            pass

    monkeypatch.setattr(
        call_module,
        "provider_chain",
        lambda ctx, res, http: (["noisy"], lambda mode, start: deaf_after_a_start, []),
    )
    spec = agent("openai-realtime")
    twilio, store = FakeTwilio(), MemoryStore()
    ctx = CallContext(uuid4(), uuid4(), uuid4(), spec, t0=trio.current_time(), stream_sid="MZ1")  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        twilio.nursery = nursery
        report = await run_call(ctx, transport_for(ctx, twilio), CallResources(store=store))  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()
    assert report.end_reason == f"no caller speech for {IDLE_S} s"
    assert twilio.closed_at is not None
    assert twilio.closed_at - ctx.t0 == pytest.approx(MAX_UTTERANCE_S + IDLE_S, abs=0.5)
