"""The rule that picks a call's chain (orchestrator/call_chain.py), without a server."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from switchboard.actors.context import CallContext
from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.agents import AgentSpec
from switchboard.orchestrator.call import fallback_chain
from switchboard.orchestrator.call_chain import chain_for_call, chain_for_session
from switchboard.orchestrator.server import example_agent_path
from switchboard.orchestrator.tokens import SessionClaims

AGENT = replace(
    load_agent_file(example_agent_path()), mode="gemini-live", fallback=("cascaded", "local")
)


def chain(agent: AgentSpec) -> list[str]:
    """The chain a call on ``agent`` walks (the call adds ``local`` last)."""
    ids = uuid.uuid4()
    return fallback_chain(
        CallContext(session_id=ids, tenant_id=ids, agent_id=ids, agent=agent, t0=0)
    )


@pytest.mark.parametrize(
    ("overrides", "source", "expected"),
    [
        ({}, "agent", ["gemini-live", "cascaded", "local"]),
        ({"configured": ["openai-realtime"]}, "config", None),
        ({"number_mode": "cascaded", "configured": ["local"]}, "number", None),
        ({"query_mode": "local", "number_mode": "cascaded"}, "query", None),
        ({"test_mode": True, "query_mode": "cascaded"}, "test_mode", None),
        ({"session_mode": "openai-realtime", "test_mode": True}, "session", None),
    ],
)
def test_the_strongest_override_leads_and_the_agents_chain_follows(
    overrides: dict[str, object], source: str, expected: list[str] | None
) -> None:
    chosen = chain_for_call(AGENT, **overrides)  # type: ignore[arg-type]
    assert chosen.source == source
    head = {
        "agent": "gemini-live",
        "config": "openai-realtime",
        "number": "cascaded",
        "query": "local",
        "test_mode": "local",
        "session": "openai-realtime",
    }[source]
    got = chain(chosen.agent)
    assert got[0] == head == chosen.first
    # Every link of the agent's own chain is still there, each once, local last.
    assert set(got) >= {"gemini-live", "cascaded", "local"} and len(got) == len(set(got))
    assert got[-1] == "local" or head == "local"
    if expected is not None:
        assert got == expected
    assert chosen.local_first == (head == "local")


def test_a_configured_chain_of_several_modes_leads_in_its_order() -> None:
    chosen = chain_for_call(AGENT, configured=["cascaded", "openai-realtime"])
    assert chain(chosen.agent) == ["cascaded", "openai-realtime", "gemini-live", "local"]


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown provider mode 'gpt-9'"):
        chain_for_call(AGENT, query_mode="gpt-9")


def claims(mode: str, source: str, test_mode: bool = False) -> SessionClaims:
    ids = uuid.uuid4()
    return SessionClaims(ids, ids, ids, None, mode, test_mode, "j", 0, 1, source)


def test_a_session_token_decides_only_when_the_session_asked() -> None:
    asked = chain_for_session(AGENT, claims("cascaded", "session"), ["openai-realtime"])
    assert (asked.first, asked.source) == ("cascaded", "session")
    tested = chain_for_session(AGENT, claims("local", "test_mode", True), ["openai-realtime"])
    assert (tested.first, tested.source) == ("local", "test_mode")
    # A session made while the agent led: the configuration as it is at the call decides.
    later = chain_for_session(AGENT, claims("gemini-live", "agent"), ["openai-realtime"])
    assert (later.first, later.source) == ("openai-realtime", "config")
