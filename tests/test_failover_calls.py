"""Failover through the real call nursery, on Trio's MockClock, with the fake providers.

The chain is openai-realtime -> gemini-live -> local; both fakes are reached
in memory (real WebSocket framing, no sockets), the caller is a fake Twilio
that plays agent audio on the call's clock and speaks eSpeak lines. Each test
asserts on the virtual time at which the caller heard agent audio again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest
import trio
from call_harness import FakeTwilio, MemoryStore, transport_for

from switchboard.actors.context import PHONE_AUDIO, CallContext
from switchboard.actors.failover.metrics import FailoverMetrics
from switchboard.actors.local.assets import APOLOGY_TRANSFER, AssetRegistry
from switchboard.actors.messages import AudioChunk
from switchboard.actors.providers import Endpoints
from switchboard.codecs import twilio_media as wire
from switchboard.codecs import ulaw_encode
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.call import CallResources, run_call
from switchboard.orchestrator.store import EventRow
from switchboard.testing import Fault, Script, ToolStep, Turn, memory_router
from switchboard.testing.fake_gemini_live import FakeGeminiLive
from switchboard.testing.fake_openai_realtime import FakeOpenAIRealtime
from switchboard.testing.speech import speak

AGENT = parse_agent_yaml(
    "name: fo\ntenant: t\ngreeting: Thanks for calling the clinic.\n"
    "instructions: You are a receptionist.\nmode: openai-realtime\nfallback: [gemini-live]\n"
    'transfer_number: "+15005550009"\nidle_timeout_seconds: 60\nintents: []\n'
    'hours: {monday: "09:00-17:00"}\n'
)
ENDPOINTS = Endpoints(
    openai_realtime_url="wss://openai.fake/v1/realtime",
    openai_api_key="sk-test",
    gemini_live_url="wss://gemini.fake/ws/BidiGenerateContent",
    gemini_api_key="g-test",
)
SETTINGS = AGENT.failover
ASSETS = AssetRegistry()
METRICS = FailoverMetrics()
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


@dataclass
class Call:
    ctx: CallContext
    twilio: FakeTwilio
    store: MemoryStore
    openai: FakeOpenAIRealtime
    gemini: FakeGeminiLive

    def events(self, type_: str | None = None) -> list[EventRow]:
        rows = [self.store.events[s] for s in sorted(self.store.events)]
        return [e for e in rows if type_ is None or e.type == type_]

    def at(self, event: EventRow) -> float:
        """An event's time on the call's clock (seconds, like ``trio.current_time()``)."""
        return self.ctx.t0 + event.t_ms / 1000


def caller_line(text: str) -> bytes:
    return ulaw_encode(speak(text, 8000))


async def run(
    openai: Script, gemini: Script, *, speak_at: Sequence[float], hang_up_at: float
) -> Call:
    """Place a call: the caller says LINES[i] at ``speak_at[i]`` s, hangs up at ``hang_up_at``."""
    fakes = Call(
        CallContext(
            uuid4(),
            uuid4(),
            uuid4(),
            AGENT,
            t0=trio.current_time(),
            call_sid="CA1",
            stream_sid="MZ1",
        ),
        FakeTwilio(),
        MemoryStore(),
        FakeOpenAIRealtime(openai),
        FakeGeminiLive(gemini),
    )
    res = CallResources(
        metrics=METRICS,
        store=fakes.store,  # type: ignore[arg-type]
        assets=ASSETS,
        endpoints=ENDPOINTS,
        connect=memory_router(
            {"openai.fake": fakes.openai.handler, "gemini.fake": fakes.gemini.handler}
        ),
    )
    lines = {round(t / 0.02): caller_line(text) for t, text in zip(speak_at, LINES, strict=False)}
    encoder = wire.InboundEncoder("MZ1", "CA1", "AC1")

    async def caller() -> None:
        """A phone sends a 20 ms frame every 20 ms: speech when a line is due, else silence."""
        pending = b""
        for frame in range(round(hang_up_at / 0.02)):
            pending += lines.get(frame, b"")
            payload, pending = (pending[:160], pending[160:]) if pending else (b"\xff" * 160, b"")
            await fakes.twilio.to_server.send(encoder.media(payload.ljust(160, b"\xff")))
            await trio.sleep(0.02)
        await fakes.twilio.to_server.send(encoder.stop())

    async with trio.open_nursery() as nursery:
        fakes.twilio.nursery = nursery
        nursery.start_soon(caller)
        await run_call(fakes.ctx, transport_for(fakes.ctx, fakes.twilio), res)
        nursery.cancel_scope.cancel()
    return fakes


def gemini_context(call: Call) -> str:
    """Everything the Gemini fake was told as conversation context, as one JSON string."""
    return json.dumps([repr(m) for m in call.gemini.received])


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
    assert call.events("transfer")
    # The variant that announces the transfer (the agent has a transfer number).
    assert apology.data == TRANSFER_APOLOGY[0].data
