"""The replay's shared shapes (pinned first: the engine, the diff, the timeline and
the CLI code to them).

An *event row* is what a trace's ``events.jsonl`` holds and what a replay
produces: ``{"seq": int, "type": str, "t_ms": float, "payload": dict}``, ``seq``
from 1 in order, ``t_ms`` milliseconds on the call's clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..agents import AgentSpec
from ..errors import SwitchboardError

EventRow = dict[str, Any]


class Unreplayable(SwitchboardError):  # noqa: N818 - a state of the trace, as trace_file's
    """The trace cannot be replayed (exit status 2); the message says why: an unknown
    format version, no audio or no provider outputs in it, a door it does not know."""


@dataclass(frozen=True)
class WhatIf:
    """A changed configuration to play the caller's recorded side against.

    ``agent`` replaces the agent the call ran on; ``settings`` are agent settings by
    dotted path (``{"failover.stall_timeout_ms": "1000"}``, values as YAML scalars);
    ``chain`` replaces the fallback chain (``["local"]``); ``against`` is a mode to put
    first in the chain. Empty: replay the call as it was.
    """

    agent: AgentSpec | None = None
    settings: Mapping[str, str] = field(default_factory=dict)
    chain: Sequence[str] | None = None
    against: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.agent or self.settings or self.chain or self.against)


@dataclass
class Replay:
    """What a replay produced: its events (event rows), how the call ended, and what
    was played against it (provider instances recorded or live, by source)."""

    events: list[EventRow]
    end_reason: str
    turns_completed: int
    providers: list[dict[str, Any]] = field(default_factory=list)
