"""Calls with typed text replay to the events they logged (issue 14 point 7).

Each call is placed on Trio's MockClock through the real call nursery
(``typed_calls.place_typed_call``, recorded), turned into its trace, and
replayed: the replay's caller peer types what the caller typed (the browser's
``text``, a Realtime client's ``conversation.item.create``, ``response.create``
and ``response.cancel``) at the recorded times, the recorded provider waits for
each typed turn before its answer, and the replay has the recorded events,
exactly; two replays are byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing
from test_typed_text_calls import AGENT, GREETING, LONG
from typed_calls import Door, TypedCall, place_typed_call, text_item

from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.replay.api import WhatIf
from switchboard.orchestrator.replay.compare import compare_events
from switchboard.orchestrator.replay.engine import replay_trace
from switchboard.orchestrator.replay.timeline import build_timeline
from switchboard.orchestrator.trace_file import Trace
from switchboard.testing import Script, Turn

SCRIPT = Script(greeting=GREETING, turns=(Turn(say=LONG), Turn(say="Sure, it is free.")))


def record(door: Door, script: Sequence[tuple[float, dict[str, Any]]]) -> Trace:
    async def main() -> TypedCall:
        return await place_typed_call(AGENT, SCRIPT, door, script, hang_up_s=8.0, record=True)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)).trace()


def assert_replays_exactly(trace: Trace) -> list[dict[str, Any]]:
    replay = replay_trace(trace)
    comparison = compare_events(trace.events, replay.events, tolerance_ms=0)
    assert comparison.matches, comparison.first and comparison.first.describe()
    again = replay_trace(trace)
    assert json.dumps(again.events, sort_keys=True) == json.dumps(replay.events, sort_keys=True)
    return replay.events


def test_a_browser_call_with_typing_over_the_agent_replays_event_for_event() -> None:
    trace = record(
        "browser",
        [
            (2.0, {"event": "text", "text": "tell me about the clinic"}),
            (3.0, {"event": "text", "text": "is there parking"}),
        ],
    )
    events = assert_replays_exactly(trace)
    typed = [e["payload"]["text"] for e in events if e["type"] == "turn:user"]
    assert typed == ["tell me about the clinic", "is there parking"]
    assert [e["type"] for e in events].count("barge_in") == 1


def test_a_realtime_call_with_text_items_and_a_cancel_replays_event_for_event() -> None:
    trace = record(
        "realtime",
        [
            (2.0, text_item("Tell me about the clinic.", id="item_q1")),
            (2.001, {"type": "response.create"}),
            (2.5, {"type": "response.cancel"}),
            (3.0, text_item("Is there parking?")),
            (3.001, {"type": "response.create"}),
        ],
    )
    events = assert_replays_exactly(trace)
    kinds = [e["type"] for e in events]
    assert kinds.count("realtime.item.create") == 2 and kinds.count("response.cancel") == 1
    typed = [e["payload"]["text"] for e in events if e["type"] == "turn:user"]
    assert typed == ["Tell me about the clinic.", "Is there parking?"]


def test_a_what_if_against_local_answers_the_typed_line_once_by_its_intent() -> None:
    agent = parse_agent_yaml(
        "name: typed\ntenant: t\ngreeting: Hello.\ninstructions: You are a receptionist.\n"
        "mode: openai-realtime\nidle_timeout_seconds: 30\nintents:\n"
        "  - name: hours\n    phrases: [opening hours]\n    reply: We are open nine to five.\n"
    )

    async def main() -> TypedCall:
        return await place_typed_call(
            agent,
            Script(greeting=GREETING, turns=(Turn(say="Let me see."),)),
            "browser",
            [(3.0, {"event": "text", "text": "What are your opening hours?"})],
            hang_up_s=8.0,
            record=True,
        )

    trace = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)).trace()
    replay = replay_trace(trace, WhatIf(chain=("local",)))
    turns = [e["payload"] for e in replay.events if e["type"] == "turn:user"]
    assert [(t["text"], t.get("typed")) for t in turns] == [("What are your opening hours?", True)]
    said = [e["payload"]["text"] for e in replay.events if e["type"] == "turn:agent"]
    assert said == ["Hello.", "We are open nine to five."]


def test_the_timeline_shows_a_typed_line_at_its_instant_and_times_the_answer_from_it() -> None:
    trace = record("browser", [(3.0, {"event": "text", "text": "tell me about the clinic"})])
    timeline = build_timeline(trace.events, records=trace.records)
    (typed,) = [t for t in timeline.turns if t.who == "caller"]
    assert typed.text == "(typed) tell me about the clinic"
    assert typed.start_ms == typed.end_ms == pytest.approx(3000, abs=1)
    (answer,) = [t for t in timeline.turns if t.who == "agent" and not t.greeting]
    assert answer.latency_ms is not None and 0 <= answer.latency_ms < 500
