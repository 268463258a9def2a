"""What-if: the agent a replay runs on, changed as asked.

``--agent FILE`` replaces the recorded agent; ``--set path=value`` changes one
setting by its dotted path in the agent's JSON form (:meth:`AgentSpec.to_json`,
the agent file's keys: ``failover.stall_timeout_ms``, ``greeting``, ``fallback``),
the value read as a YAML scalar or flow list (``1000``, ``true``, ``[local]``);
``--chain`` sets ``mode`` and ``fallback`` together; ``--against MODE`` puts
MODE first. The result is validated as any agent is.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..agents import AgentSpec
from ..errors import ConfigError
from .api import WhatIf
from .recorded_call import RecordedCall

__all__ = ["NOT_DECISIONS", "changed_agent", "decisions_changed", "parse_setting"]

NOT_DECISIONS = ("failover", "recording", "mode", "fallback", "providers")
"""Agent settings that change how a call is run, not what the agent says or does: the
local provider's answers and the builtin tools' results do not depend on them."""


def decisions_changed(recorded: AgentSpec, agent: AgentSpec) -> bool:
    """Whether ``agent`` answers differently from ``recorded``: anything but
    :data:`NOT_DECISIONS` differs (greeting, intents, replies, hours, tools...)."""

    def decisions(spec: AgentSpec) -> dict[str, Any]:
        return {k: v for k, v in spec.to_json().items() if k not in NOT_DECISIONS}

    return decisions(recorded) != decisions(agent)


def parse_setting(text: str) -> tuple[str, str]:
    """``"failover.stall_timeout_ms=1000"`` -> ``("failover.stall_timeout_ms", "1000")``.

    Raises:
        ConfigError: no ``=``, or an empty path.
    """
    path, sep, value = text.partition("=")
    if not sep or not path.strip():
        raise ConfigError(
            f"--set wants PATH=VALUE (e.g. failover.stall_timeout_ms=1000), got {text!r}"
        )
    return path.strip(), value.strip()


def changed_agent(call: RecordedCall, what_if: WhatIf) -> AgentSpec:
    """The recorded agent (or ``what_if.agent``) with ``what_if``'s changes.

    Raises:
        ConfigError: a path the agent does not have, a value it refuses.
    """
    agent = what_if.agent or call.agent
    if not (what_if.settings or what_if.chain or what_if.against):
        return agent
    data: dict[str, Any] = agent.to_json()
    for path, text in what_if.settings.items():
        _set(data, path, _scalar(text))
    if what_if.chain:
        data["mode"], data["fallback"] = what_if.chain[0], list(what_if.chain[1:])
    if what_if.against:
        rest = [
            m for m in [data.get("mode"), *(data.get("fallback") or [])] if m != what_if.against
        ]
        data["mode"], data["fallback"] = what_if.against, rest
    try:
        return AgentSpec.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"the what-if does not make a valid agent: {exc}") from exc


def _scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node: Any = data
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            where = ".".join(keys[: depth + 1])
            raise ConfigError(f"--set {path}: the agent has no setting group {where!r}")
        node = child
    if keys[-1] not in node:
        known = ", ".join(sorted(node)) if isinstance(node, dict) else ""
        raise ConfigError(f"--set {path}: no such setting (known here: {known})")
    node[keys[-1]] = value
