"""An agent's ``recording:`` settings (errors name file, line and key) and the consent rule."""

from __future__ import annotations

import pytest

from switchboard.orchestrator.agent_file import load_agent_file, parse_agent_yaml
from switchboard.orchestrator.agents import AgentSpec
from switchboard.orchestrator.errors import AgentFileError
from switchboard.orchestrator.recording_policy import (
    ALL_PARTY_CONSENT_STATES,
    RecordingPolicy,
    caller_state,
)
from switchboard.orchestrator.server import example_agent_path

BASE = "name: t\ntenant: t\ngreeting: Hi.\nintents: []\n"


def agent(recording: str) -> AgentSpec:
    return parse_agent_yaml(BASE + "recording:\n" + recording, "a.yaml")


def test_an_agent_records_nothing_unless_it_says_so() -> None:
    spec = parse_agent_yaml(BASE)
    assert spec.recording == RecordingPolicy()
    assert spec.recording.enabled is False and spec.recording.announce == "auto"
    assert spec.recording.retention_days == 30
    assert spec.recording.consent_line == "This call is recorded."
    assert spec.recording.all_party_states == ALL_PARTY_CONSENT_STATES


def test_every_setting_is_read_and_survives_the_database() -> None:
    spec = agent(
        "  enabled: true\n  announce: always\n  retention_days: 90\n"
        "  consent_line: Calls are recorded for training.\n  all_party_states: [ca, or]\n"
    )
    assert spec.recording == RecordingPolicy(
        enabled=True,
        announce="always",
        retention_days=90,
        consent_line="Calls are recorded for training.",
        all_party_states=("CA", "OR"),
    )
    assert AgentSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("  enabled: yes please\n", "a.yaml:6: key 'recording.enabled': expected true or false"),
        (
            "  announce: sometimes\n",
            "a.yaml:6: key 'recording.announce': unknown value 'sometimes'",
        ),
        ("  retention_days: 0\n", "a.yaml:6: key 'recording.retention_days': must be positive"),
        (
            "  retention_days: 4000\n",
            "a.yaml:6: key 'recording.retention_days': must be between 1 and 3650 days",
        ),
        ("  consent_line: ''\n", "a.yaml:6: key 'recording.consent_line': must not be empty"),
        (
            "  all_party_states: [California]\n",
            "a.yaml:6: key 'recording.all_party_states': 'CALIFORNIA' is not a two-letter",
        ),
        ("  retention: 10\n", "a.yaml:6: key 'recording.retention': unknown key (did you mean"),
    ],
)
def test_a_bad_recording_setting_names_file_line_and_key(body: str, message: str) -> None:
    with pytest.raises(AgentFileError) as caught:
        agent(body)
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    ("announce", "state", "announced", "rule"),
    [
        ("auto", "CA", True, "auto:all-party"),
        ("auto", " wa ", True, "auto:all-party"),
        ("auto", "TX", False, "auto:one-party"),
        ("auto", None, True, "auto:unknown"),
        ("auto", "", True, "auto:unknown"),
        ("auto", "Ontario", True, "auto:unknown"),
        ("always", "TX", True, "always"),
        ("never", "CA", False, "never"),
    ],
)
def test_the_consent_rule(announce: str, state: str | None, announced: bool, rule: str) -> None:
    consent = RecordingPolicy(enabled=True, announce=announce).consent(state)
    assert (consent.announced, consent.rule) == (announced, rule)
    assert consent.state == caller_state(state)


def test_the_list_of_all_party_states_is_the_agents_to_set() -> None:
    policy = RecordingPolicy(enabled=True, all_party_states=("TX",))
    assert policy.consent("TX").announced and not policy.consent("CA").announced


def test_the_example_receptionist_records_and_announces_by_state() -> None:
    spec = load_agent_file(example_agent_path())
    assert spec.recording.enabled and spec.recording.announce == "auto"
