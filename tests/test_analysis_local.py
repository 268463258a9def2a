"""The local post-call analyser: deterministic, offline, from the call's own record."""

from __future__ import annotations

from typing import Any

import pytest

from switchboard.orchestrator.agent_file import AgentFileError, parse_agent_yaml
from switchboard.orchestrator.agents import AgentSpec
from switchboard.orchestrator.analysis_local import analyse_locally
from switchboard.orchestrator.analysis_spec import AnalysisSpec, CallFacts, Criterion

SPEC = AnalysisSpec(
    (
        Criterion("hours_answered", "The caller learned the hours.", intent="hours"),
        Criterion("booked", "A visit was booked.", phrases=("booked you in",), weight=3),
        Criterion("polite", "The agent was polite."),  # nothing to judge it by offline
    )
)


def facts(
    turns: list[tuple[str, str]],
    events: list[dict[str, Any]] | None = None,
    end_reason: str = "caller hung up",
) -> CallFacts:
    return CallFacts(end_reason, tuple(turns), tuple(events or ()), SPEC)


def user(text: str, intent: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text}
    if intent:
        payload["intent"] = intent
    return {"type": "turn:user", "payload": payload}


def test_a_call_that_asked_the_hours_and_booked() -> None:
    result = analyse_locally(
        facts(
            [
                ("caller", "When are you open?"),
                ("agent", "Nine to five. I have booked you in."),
                ("caller", "Perfect, thank you!"),
            ],
            [
                user("When are you open?", "hours"),
                user("Perfect, thank you!"),
                {"type": "tool:call", "payload": {"name": "lookup_hours"}},
            ],
        )
    )
    analysis = result["analysis"]
    assert analysis["outcome"] == "completed" and analysis["caller_intent"] == "hours"
    assert analysis["sentiment"] == "positive"
    assert [c["met"] for c in analysis["criteria"]] == [True, True, None]
    assert analysis["score"] == 1.0  # the unjudged criterion is left out
    assert result["summary"] == (
        "The caller spoke 2 times about hours. Tools used: lookup_hours."
        " Outcome: completed (ended: caller hung up)."
    )
    assert result["analyser"] == "local"


@pytest.mark.parametrize(
    ("turns", "events", "end_reason", "outcome"),
    [
        ([], [], "caller hung up", "no_conversation"),
        (
            [("caller", "A person please")],
            [{"type": "tool:call", "payload": {"name": "transfer_to_human"}}],
            "agent hung up",
            "transferred",
        ),
        (
            [("caller", "Hello?")],
            [{"type": "failover.exhausted", "payload": {}}],
            "gave up",
            "failed",
        ),
        ([("caller", "Hello?")], [], "server lost", "failed"),
    ],
)
def test_outcomes(
    turns: list[tuple[str, str]], events: list[dict[str, Any]], end_reason: str, outcome: str
) -> None:
    assert analyse_locally(facts(turns, events, end_reason))["analysis"]["outcome"] == outcome


def test_an_angry_caller_is_negative_and_misses_the_criteria() -> None:
    result = analyse_locally(facts([("caller", "This is useless, I am so frustrated.")]))
    assert result["analysis"]["sentiment"] == "negative"
    assert result["analysis"]["caller_intent"] is None
    assert result["analysis"]["score"] == 0.0


def test_the_same_call_gives_the_same_analysis() -> None:
    call = facts([("caller", "When are you open?")], [user("When are you open?", "hours")])
    assert analyse_locally(call) == analyse_locally(call)


BASE = "name: a\ntenant: t\ngreeting: Hi.\nintents: []\n"


def test_the_agent_yaml_analysis_key_round_trips_through_the_stored_spec() -> None:
    spec = parse_agent_yaml(
        BASE
        + "analysis:\n  criteria:\n"
        + "    - {name: booked, description: Booked., intent: booking, weight: 2}\n"
    )
    assert spec.analysis.criteria == (Criterion("booked", "Booked.", intent="booking", weight=2.0),)
    assert AgentSpec.from_json(spec.to_json()) == spec
    assert "analysis" not in parse_agent_yaml(BASE).to_json()  # older specs keep their hash


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("analysis: [1]\n", "expected a mapping"),
        ("analysis:\n  criteria: [{description: x}]\n", "needs a name"),
        ("analysis:\n  criteria: [{name: a, weight: 0}]\n", "weight must be > 0"),
        ("analysis:\n  criteria: [{name: a, colour: red}]\n", "unknown keys"),
        ("analysis:\n  criteria: [{name: a}, {name: a}]\n", "distinct names"),
    ],
)
def test_a_bad_analysis_key_is_refused_with_the_reason(yaml: str, message: str) -> None:
    with pytest.raises(AgentFileError, match=message):
        parse_agent_yaml(BASE + yaml)
