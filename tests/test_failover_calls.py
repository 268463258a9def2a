"""Failover through the real call nursery, on Trio's MockClock, with the fake providers.

The chain is openai-realtime -> gemini-live -> local; both fakes are reached
in memory (real WebSocket framing, no sockets), the caller is a fake Twilio
that plays agent audio on the call's clock and speaks eSpeak lines. Each test
asserts on the virtual time at which the caller heard agent audio again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
import trio
from provider_calls import ASSETS, METRICS, Call, place_call

from switchboard.actors.context import PHONE_AUDIO
from switchboard.actors.local.assets import APOLOGY_TRANSFER
from switchboard.actors.messages import AudioChunk
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.testing import Fault, Script, ToolStep, Turn

AGENT = parse_agent_yaml(
    "name: fo\ntenant: t\ngreeting: Thanks for calling the clinic.\n"
    "instructions: You are a receptionist.\nmode: openai-realtime\nfallback: [gemini-live]\n"
    'transfer_number: "+15005550009"\nidle_timeout_seconds: 60\nintents: []\n'
    'hours: {monday: "09:00-17:00"}\n'
)
SETTINGS = AGENT.failover
LINES = (
    "what are your opening hours",
    "can I book a cleaning",
    "is there parking",
    "one more question please",
)


TRANSFER_APOLOGY: list[AudioChunk] = []  # the transfer variant, synthesized on its own


@pytest.fixture(scope="module", autouse=True)
def apology_ready() -> None:
    """The apology is made when the agent is loaded (the server does this at start)."""

    async def prepare() -> None:
        await ASSETS.get(AGENT).prepare(PHONE_AUDIO)
        TRANSFER_APOLOGY.append(
            await ASSETS.speech.synthesize(APOLOGY_TRANSFER, AGENT.voice, PHONE_AUDIO)
        )

    trio.run(prepare)  # in a speech worker, before the tests' virtual clocks start


async def run(
    openai: Script, gemini: Script, *, speak_at: Sequence[float], hang_up_at: float
) -> Call:
    """Place a call: the caller says LINES[i] at ``speak_at[i]`` s, hangs up at ``hang_up_at``."""
    return await place_call(
        AGENT, openai, gemini, lines=LINES, speak_at=speak_at, hang_up_at=hang_up_at
    )


def gemini_context(call: Call) -> str:
    """Everything the Gemini fake was told as conversation context, as one JSON string."""
    return call.gemini_context()


async def test_a_5xx_at_the_handshake_hands_the_greeting_to_the_next_link(
    autojump_clock: trio.abc.Clock,
) -> None:
    call = await run(
        Script(faults=(Fault("http_5xx", status=503),)),
        Script(greeting="Thanks for calling, this is the backup line."),
        speak_at=(),
        hang_up_at=6.0,
    )
    (failed,) = call.events("provider.failed")
    assert failed.payload["provider"] == "openai-realtime"
    assert failed.payload["kind"] == "http_5xx"
    (switch,) = call.events("failover.switch")
    assert (switch.payload["from"], switch.payload["to"]) == ("openai-realtime", "gemini-live")
    # The process-wide counters (GET /metrics) saw the failure and the switch.
    assert METRICS.count("provider.failed", "openai-realtime", "http_5xx") >= 1
    assert METRICS.count("failover.switch", "openai-realtime", "gemini-live") >= 1
    assert 'event="failover.switch"' in METRICS.prometheus_text()
    greeting = call.events("turn:agent")[0]
    assert greeting.payload["text"] == "Thanks for calling, this is the backup line."
    # The caller hears the backup's greeting at once: the refusal costs no waiting.
    _, first_heard = call.twilio.heard_again_after(call.ctx.t0)
    assert first_heard - call.ctx.t0 < 0.25


async def test_a_stall_mid_answer_switches_and_the_next_provider_hears_the_turn(
    autojump_clock: trio.abc.Clock,
) -> None:
    call = await run(
        Script(
            greeting="Hello from the primary.",
            turns=(
                Turn(
                    say="We are open from nine in the morning until five in the evening "
                    "on weekdays.",
                    caller_text=LINES[0],
                ),
            ),
            faults=(Fault("stall", turn=1, after_audio_ms=600),),
        ),
        Script(turns=(Turn(say="We open at nine.", caller_text=LINES[0]),)),
        speak_at=(3.0,),
        hang_up_at=14.0,
    )
    (failed,) = call.events("provider.failed")
    assert failed.payload["kind"] == "stall" and failed.payload["turn"] == 0
    # The new provider starts from the conversation: turn 1's caller text, answered at once.
    assert LINES[0] in gemini_context(call)
    assert any(e.payload["text"] == "We open at nine." for e in call.events("turn:agent"))
    # The seeded text turn is context, not caller speech: one turn:user, with audio times.
    (user,) = call.events("turn:user")
    assert user.payload["text"] == LINES[0] and user.payload["audio_end_ms"] > 0
    # The caller's silence: from the end of the stalled audio to the backup's answer.
    silent_from, heard_again = call.twilio.heard_again_after(call.at(failed))
    gap_ms = (heard_again - silent_from) * 1000
    assert gap_ms <= SETTINGS.audio_gap_timeout_ms + 250
    (switch,) = call.events("failover.switch")
    assert switch.payload["gap_ms"] == pytest.approx(gap_ms, abs=25)


async def test_a_drop_after_turn_two_switches_with_the_context_and_no_tool_runs_twice(
    autojump_clock: trio.abc.Clock,
) -> None:
    call = await run(
        Script(
            turns=(
                Turn(say="Good question.", caller_text=LINES[0]),
                Turn(
                    say="Let me look.",
                    tool=ToolStep("lookup_hours"),
                    then_say="We can book you on Monday.",
                    caller_text=LINES[1],
                ),
            ),
            faults=(Fault("drop", turn=3, after_messages=0),),
        ),
        # The backup counts the caller turns it is given: its answer is its third turn.
        Script(turns=(Turn(), Turn(), Turn(say="Yes, there is parking behind the building."))),
        speak_at=(3.0, 10.0, 18.0),
        hang_up_at=26.0,
    )
    (failed,) = call.events("provider.failed")
    assert failed.payload["kind"] == "disconnect" and failed.payload["turn"] == 2
    context = gemini_context(call)
    assert LINES[0] in context and LINES[1] in context and "We can book you on Monday." in context
    assert "Monday" in context  # the tool's result, given as done
    assert [e.payload["name"] for e in call.events("tool:call")] == ["lookup_hours"]
    assert len(call.events("tool:result")) == 1
    assert any("parking" in e.payload["text"] for e in call.events("turn:agent"))
    _, heard_again = call.twilio.heard_again_after(call.at(failed))
    assert heard_again - call.at(failed) <= 0.25  # a drop is seen at once


async def test_a_stall_after_three_turns_reconnects_once_then_apologises_and_transfers(
    autojump_clock: trio.abc.Clock,
) -> None:
    call = await run(
        Script(
            turns=tuple(
                Turn(say=f"Answer number {n}.", caller_text=LINES[n - 1]) for n in (1, 2, 3)
            ),
            faults=(
                Fault("stall", turn=4, after_audio_ms=0, connection=1),
                Fault("http_5xx", connection=2),
            ),
        ),
        Script(),
        speak_at=(3.0, 9.0, 15.0, 21.0),
        hang_up_at=40.0,
    )
    failures = call.events("provider.failed")
    assert [f.payload["kind"] for f in failures] == ["stall", "http_5xx"]
    assert failures[0].payload["turn"] == 3
    assert call.events("failover.suppressed")[0].payload["reason"] == "locked"
    assert len(call.events("failover.reconnect")) == 1
    assert call.gemini.connections == 0  # no switch after the lock
    (exhausted,) = call.events("failover.exhausted")
    assert exhausted.payload["transfer_to"] == "+15005550009"
    # The caller finished speaking; the stall is declared stall_timeout_ms later, and the
    # apology (made ahead, in the local voice) plays at once.
    caller_done = call.at(call.events("speech.stopped")[-1])
    assert call.at(failures[0]) - caller_done == pytest.approx(
        SETTINGS.stall_timeout_ms / 1000, abs=0.05
    )
    _, apology_heard = call.twilio.heard_again_after(call.at(failures[0]))
    assert apology_heard - call.at(failures[1]) <= 0.25
    (transfer,) = call.events("transfer")
    assert transfer.payload["number"] == "+15005550009"
    assert call.at(transfer) >= call.twilio.heard[-1][1] - 0.05  # after the apology was heard


async def test_every_link_failing_before_the_lock_ends_in_the_local_apology_and_a_transfer(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import switchboard.actors.local.provider as local_provider

    def broken(setup: Any) -> Any:
        raise RuntimeError("local models missing")

    monkeypatch.setattr(local_provider, "build", broken)
    call = await run(
        Script(faults=(Fault("http_5xx", status=502),)),
        Script(faults=(Fault("http_5xx", status=503),)),
        speak_at=(),
        hang_up_at=10.0,
    )
    kinds = [(f.payload["provider"], f.payload["kind"]) for f in call.events("provider.failed")]
    assert kinds[:2] == [("openai-realtime", "http_5xx"), ("gemini-live", "http_5xx")]
    assert kinds[2][0] == "local"
    (exhausted,) = call.events("failover.exhausted")
    assert exhausted.payload["transfer_to"] == "+15005550009"
    apology = ASSETS.get(AGENT).prepared_apology(PHONE_AUDIO)
    assert apology is not None
    heard_s = sum(end - start for start, end in call.twilio.heard)
    assert heard_s == pytest.approx(apology.duration_ms / 1000, abs=0.03)  # all of it
    _, first_heard = call.twilio.heard_again_after(call.ctx.t0)
    assert first_heard - call.ctx.t0 < 0.25
    # The variant that announces the transfer (the agent has a transfer number).
    assert apology.data == TRANSFER_APOLOGY[0].data
    # This runtime has no Twilio REST credentials: the transfer cannot happen, the log
    # says why, and the call ends at once instead of leaving the caller in silence.
    (transfer,) = call.events("transfer")
    assert transfer.payload["redirected"] is False
    assert transfer.payload["reason"] == "no_credentials"
    (ending,) = call.events("call.ending")
    assert ending.payload["reason"] == "gave up; transfer failed (no_credentials)"
    assert call.at(ending) - call.at(transfer) <= 0.05
    assert call.twilio.closed_at is not None
    assert call.twilio.closed_at - call.twilio.heard[-1][1] <= 0.5


async def test_a_stall_before_the_callers_words_were_transcribed_asks_them_again_never_greets(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The caller heard the greeting and spoke; the provider stalled before it sent the
    transcript. The next one has no caller turn to answer and must not greet again: it
    asks the caller to say it again (the agent's no-match reply), then answers them."""
    call = await place_call(
        AGENT,
        Script(
            greeting="Thanks for calling the clinic.",
            turns=(Turn(say="We open at nine.", caller_text=LINES[0]),),
            faults=(Fault("stall", turn=1, before_transcript=True),),
        ),
        Script(
            greeting="Hello, this is the backup line.",
            turns=(
                Turn(say="Sorry, I didn't catch that. Could you say it again?"),
                Turn(say="We open at nine.", caller_text=LINES[0]),
            ),
        ),
        lines=(LINES[0], LINES[0]),
        speak_at=(3.0, 12.0),
        hang_up_at=20.0,
    )
    (failed,) = call.events("provider.failed")
    assert failed.payload["kind"] == "stall" and failed.payload["provider"] == "openai-realtime"
    said = [e.payload["text"] for e in call.events("turn:agent")]
    # The caller hears the greeting once, then a request to repeat, then the answer.
    assert said == [
        "Thanks for calling the clinic.",
        "Sorry, I didn't catch that. Could you say it again?",
        "We open at nine.",
    ]
    assert [e.payload["greeting"] for e in call.events("response.start")] == [True, False, False]
    # The backup was told the caller's words were lost, and what to say.
    context = call.gemini_context()
    assert "lost on the line" in context and AGENT.no_match_reply in context
    # ... at once: the silence is the stall timeout, not the idle timeout.
    _, heard_again = call.twilio.heard_again_after(call.at(failed))
    assert heard_again - call.at(failed) <= 0.5
    # Only what the caller said into a microphone is a caller turn, with its audio times.
    users = call.events("turn:user")
    assert [e.payload["text"] for e in users] == [LINES[0]]
    assert users[0].payload["audio_end_ms"] > users[0].payload["audio_start_ms"] > 0


async def test_a_gemini_drop_before_the_callers_words_were_transcribed_asks_them_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Gemini Live reports no end of speech: the runtime knows the caller spoke only from
    the pieces of transcription. It drops as it begins its answer; the backup asks the
    caller to say it again (not silence, not a second greeting), then answers them."""
    agent = parse_agent_yaml(
        "name: fo2\ntenant: t\ngreeting: Thanks for calling the clinic.\n"
        "instructions: You are a receptionist.\nmode: gemini-live\n"
        "fallback: [openai-realtime]\nidle_timeout_seconds: 60\nintents: []\n"
    )
    repeat = "Sorry, I didn't catch that. Could you say it again?"
    call = await place_call(
        agent,
        Script(
            greeting="Hello, this is the backup line.",
            turns=(Turn(say=repeat), Turn(say="We open at nine.", caller_text=LINES[0])),
        ),
        Script(
            greeting="Thanks for calling the clinic.",
            turns=(Turn(say="We open at nine.", caller_text=LINES[0]),),
            faults=(Fault("drop", turn=1),),
        ),
        lines=(LINES[0], LINES[0]),
        speak_at=(3.0, 12.0),
        hang_up_at=20.0,
    )
    (failed,) = call.events("provider.failed")
    assert (failed.payload["provider"], failed.payload["kind"]) == ("gemini-live", "disconnect")
    # Not silence until the caller speaks again: the backup asks at once.
    _, heard_again = call.twilio.heard_again_after(call.at(failed))
    assert heard_again - call.at(failed) <= 0.5
    said = [e.payload["text"] for e in call.events("turn:agent")]
    assert said == ["Thanks for calling the clinic.", repeat, "We open at nine."]
    asked = [e for e in call.openai.received if e.get("type") == "response.create"]
    assert agent.no_match_reply in json.dumps(asked[0])
