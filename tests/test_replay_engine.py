"""Replay of calls recorded through the real call nursery with the fake providers.

Each call is placed on Trio's MockClock (``provider_calls.place_call``) with a
recording tape, turned into a trace as ``trace export`` would (events, agent
snapshot, tape), and replayed: the replay must produce the recorded events
(same order, payloads, times) and two replays must be byte-identical. A
what-if with a shorter stall timeout moves the failover earlier by the
difference; a trace that cannot be replayed says why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing
from provider_calls import Call, place_call

from switchboard.codecs.recording_format import Kind
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.agents import AgentSpec
from switchboard.orchestrator.replay.api import Replay, Unreplayable, WhatIf
from switchboard.orchestrator.replay.compare import compare_events
from switchboard.orchestrator.replay.engine import replay_trace
from switchboard.orchestrator.trace_file import Trace
from switchboard.testing import Fault, Script, ToolStep, Turn

AGENT = parse_agent_yaml(
    "name: fo\ntenant: t\ngreeting: Thanks for calling the clinic.\n"
    "instructions: You are a receptionist.\nmode: openai-realtime\nfallback: [gemini-live]\n"
    'transfer_number: "+15005550009"\nidle_timeout_seconds: 60\nintents: []\n'
    'hours: {monday: "09:00-17:00"}\n'
)
NO_SCRIPT = Script()
LINES = ("what are your opening hours", "can I book a cleaning", "is there parking")
LONG = (
    "We are open from nine in the morning until five in the evening on weekdays, and on "
    "Saturdays from ten until two, except on public holidays when we are closed all day."
)


def record(
    openai: Script,
    gemini: Script = NO_SCRIPT,
    *,
    speak_at: Sequence[float] = (),
    hang_up_at: float = 10.0,
    agent: AgentSpec = AGENT,
    lines: Sequence[str] = LINES,
    **options: Any,
) -> Trace:
    """Place and record a call on a MockClock of its own; its trace. ``options``: more
    for :func:`place_call` (``tool_runners``, ``setup_s``)."""

    async def main() -> Call:
        return await place_call(
            agent,
            openai,
            gemini,
            lines=lines,
            speak_at=speak_at,
            hang_up_at=hang_up_at,
            record=True,
            **options,
        )

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)).trace()


def types(events: Sequence[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def first(events: Sequence[dict[str, Any]], type_: str) -> dict[str, Any]:
    return next(e for e in events if e["type"] == type_)


def assert_replays_exactly(trace: Trace) -> Replay:
    """The replay has the recording's events (exactly: the recording was on a MockClock
    too), and a second replay is byte-identical to the first."""
    replay = replay_trace(trace)
    comparison = compare_events(trace.events, replay.events, tolerance_ms=0)
    assert comparison.matches, comparison.first and comparison.first.describe()
    again = replay_trace(trace)
    assert json.dumps(again.events, sort_keys=True) == json.dumps(replay.events, sort_keys=True)
    return replay


def test_a_stall_and_failover_replays_event_for_event() -> None:
    trace = record(
        Script(
            greeting="Hello from the primary.",
            turns=(Turn(say=LONG, caller_text=LINES[0]),),
            faults=(Fault("stall", turn=1, after_audio_ms=600),),
        ),
        Script(turns=(Turn(say="We open at nine.", caller_text=LINES[0]),)),
        speak_at=(3.0,),
        hang_up_at=14.0,
    )
    assert "failover.switch" in types(trace.events)
    replay = assert_replays_exactly(trace)
    assert [p["played"] for p in replay.providers] == ["openai-realtime#1", "gemini-live#2"]
    assert replay.end_reason == "caller hung up"


def test_a_5xx_at_connect_replays_with_the_backup_greeting() -> None:
    trace = record(
        Script(faults=(Fault("http_5xx", status=503),)),
        Script(greeting="Thanks for calling, this is the backup line."),
        hang_up_at=6.0,
    )
    failed = first(trace.events, "provider.failed")
    assert failed["payload"]["kind"] == "http_5xx"
    assert_replays_exactly(trace)


def test_a_barge_in_replays_with_what_the_caller_heard() -> None:
    trace = record(
        Script(
            turns=(Turn(say=LONG, caller_text=LINES[0]), Turn(say="Sure.", caller_text=LINES[1]))
        ),
        speak_at=(3.0, 8.0),
        hang_up_at=14.0,
    )
    barge = first(trace.events, "barge_in")
    assert barge["payload"]["heard_ms"] > 0
    assert_replays_exactly(trace)


def record_hours_call() -> Trace:
    """A call whose provider looks the hours up (``lookup_hours``) for the caller."""
    return record(
        Script(
            turns=(
                Turn(
                    say="Let me check.",
                    tool=ToolStep("lookup_hours"),
                    then_say="We are open nine to five.",
                    caller_text=LINES[0],
                ),
            )
        ),
        speak_at=(3.0,),
        hang_up_at=10.0,
    )


def test_a_tool_call_replays_with_its_recorded_result() -> None:
    trace = record_hours_call()
    result = first(trace.events, "tool:result")
    assert result["payload"]["ok"] is True
    replay = assert_replays_exactly(trace)
    assert first(replay.events, "tool:result")["payload"]["output"] == result["payload"]["output"]


def test_a_call_slow_to_set_up_replays_with_its_first_event_as_late() -> None:
    """On a busy machine a call took 0.5 s (its journal on a slow disk) before
    ``session.start``; the replay, where setting up takes no time, waits as long."""
    trace = record(
        Script(turns=(Turn(say="We open at nine.", caller_text=LINES[0]),)),
        speak_at=(3.0,),
        hang_up_at=8.0,
        setup_s=0.5,
    )
    assert first(trace.events, "session.start")["t_ms"] == 500.0
    assert_replays_exactly(trace)


def test_a_shorter_stall_timeout_moves_the_failover_earlier_by_the_difference() -> None:
    trace = record(
        Script(faults=(Fault("stall", turn=1),)),  # never answers the caller
        Script(turns=(Turn(say="We open at nine.", caller_text=LINES[0]),)),
        speak_at=(3.0,),
        hang_up_at=14.0,
    )
    recorded = first(trace.events, "provider.failed")
    assert recorded["payload"]["kind"] == "stall"
    default_ms = AGENT.failover.stall_timeout_ms
    shorter = replay_trace(trace, WhatIf(settings={"failover.stall_timeout_ms": "1000"}))
    failed = first(shorter.events, "provider.failed")
    assert failed["payload"]["kind"] == "stall"
    assert recorded["t_ms"] - failed["t_ms"] == pytest.approx(default_ms - 1000, abs=0.001)
    # The backup answers as it did, as much earlier: the caller waits 1 s less.
    answer = [e for e in trace.events if e["type"] == "turn:agent"][-1]
    moved = [e for e in shorter.events if e["type"] == "turn:agent"][-1]
    assert moved["payload"]["text"] == answer["payload"]["text"] == "We open at nine."
    assert answer["t_ms"] - moved["t_ms"] == pytest.approx(default_ms - 1000, abs=0.001)
    assert not compare_events(trace.events, shorter.events).matches


def test_a_trace_without_provider_records_cannot_be_replayed() -> None:
    trace = record(Script(), hang_up_at=3.0)
    assert trace.records is not None
    trace.records = [r for r in trace.records if r.kind is not Kind.PROVIDER_OUTPUT]
    with pytest.raises(Unreplayable, match="no provider instance records"):
        replay_trace(trace)
    trace.records = None
    with pytest.raises(Unreplayable, match="no tape"):
        replay_trace(trace)


def test_an_edited_recording_is_reported_at_the_event_that_differs() -> None:
    trace = record(
        Script(turns=(Turn(say="We open at nine.", caller_text=LINES[0]),)),
        speak_at=(3.0,),
        hang_up_at=10.0,
    )
    answer = next(i for i, e in enumerate(trace.events) if e["type"] == "turn:agent" and i > 3)
    trace.events[answer]["payload"]["text"] = "We never open."
    comparison = compare_events(trace.events, replay_trace(trace).events)
    assert not comparison.matches and comparison.first is not None
    assert comparison.first.index == answer and comparison.first.what == "payload.text"
    assert "We never open." in comparison.first.describe()


def test_a_what_if_against_local_answers_the_recorded_caller_with_the_agents_intents() -> None:
    agent = parse_agent_yaml(
        "name: fo\ntenant: t\ngreeting: Thanks for calling the clinic.\n"
        "instructions: You are a receptionist.\nmode: openai-realtime\n"
        "idle_timeout_seconds: 60\n"
        "intents:\n"
        "  - name: hours\n    phrases: [opening hours]\n    reply: We are open nine to five.\n"
    )
    trace = record(
        Script(turns=(Turn(say="Let me see.", caller_text=LINES[0]),)),
        speak_at=(3.0,),
        hang_up_at=12.0,
        agent=agent,
    )
    replay = replay_trace(trace, WhatIf(chain=("local",)))
    assert replay.providers[0]["played"].startswith("local stand-in")
    said = [e["payload"]["text"] for e in replay.events if e["type"] == "turn:agent"]
    assert said == ["Thanks for calling the clinic.", "We are open nine to five."]
    heard = first(trace.events, "turn:user")
    answered = next(
        e for e in replay.events if e["type"] == "response.start" and not e["payload"]["greeting"]
    )
    assert answered["t_ms"] >= heard["t_ms"]  # answered after the caller's words, not before
    assert first(replay.events, "session.start")["payload"]["chain"] == ["local"]


def test_a_what_if_with_other_hours_gives_the_tool_the_new_hours() -> None:
    trace = record_hours_call()
    recorded = first(trace.events, "tool:result")["payload"]["output"]
    same = replay_trace(trace, WhatIf(settings={"failover.stall_timeout_ms": "1500"}))
    assert first(same.events, "tool:result")["payload"]["output"] == recorded  # as recorded
    other = replay_trace(trace, WhatIf(settings={"hours.monday": "10:00-12:00"}))
    output = first(other.events, "tool:result")["payload"]["output"]
    assert output == "Monday, 10 AM to noon; closed on Tuesday to Sunday" != recorded
