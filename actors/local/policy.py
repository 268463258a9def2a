"""The local agent's dialogue policy: intent in, what to do and say out. Pure code.

Deterministic by design (the same caller intent always gets the same plan),
built from the agent file: each intent names a reply and optionally a tool;
the reply may contain ``{result}``, replaced by the tool's output. An
utterance with no intent gets the agent's ``no_match_reply``.
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.orchestrator.agents import AgentSpec

TOOL_FAILED_REPLY = "Sorry, I'm not able to do that right now."
TOOL_PENDING_REPLY = "One moment, I'm checking that for you."
"""Said while a slow tool runs (its acknowledgement); the result follows."""


@dataclass(frozen=True)
class Plan:
    """What the agent does for one caller utterance."""

    intent: str | None
    tool: str | None
    reply_template: str

    def reply(self, tool_ok: bool = True, tool_output: str = "", *, pending: bool = False) -> str:
        """The text to speak, given the tool's result (if the plan has a tool);
        ``pending``: the tool only acknowledged (its result follows later)."""
        if self.tool is not None and pending:
            return TOOL_PENDING_REPLY
        if self.tool is not None and not tool_ok:
            return TOOL_FAILED_REPLY
        return self.reply_template.replace("{result}", tool_output.strip().rstrip("."))


def plan_reply(agent: AgentSpec, intent: str | None) -> Plan:
    """The plan for an utterance recognised as ``intent`` (None: no intent matched)."""
    for candidate in agent.intents:
        if candidate.name == intent:
            return Plan(candidate.name, candidate.tool, candidate.reply)
    return Plan(None, None, agent.no_match_reply)
