"""The supervisor's record of the call's tool calls: acknowledgements, results, follow-ups.

A tool call is answered once or twice (:mod:`.tool_executor`): its result, or an
acknowledgement (``ToolResult(pending=True)``) within the tool's ``ack_ms`` and
the result later. What reaches the provider:

- an acknowledgement, or a result with no acknowledgement before it, goes to
  the provider that asked, as the tool's output: it is waiting for it;
- a result after an acknowledgement, or one whose provider has been replaced
  (a failover during the call), is a follow-up: the runtime asks the live
  provider to tell the caller (:class:`RespondNow`), in the next gap of the
  conversation (no response running, the caller not speaking, nothing owed to
  the caller, the agent's audio heard). The provider that did not ask for the
  call never sees its id.

Pure bookkeeping (no I/O); the supervisor carries out what it says and logs
``tool:ack`` / ``tool:result`` with the timings given here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from switchboard.orchestrator.agents import AgentSpec

from .local.policy import TOOL_FAILED_REPLY
from .messages import RespondNow, ToolCallRequested, ToolResult

__all__ = ["ToolCalls", "ToolDelivery"]


@dataclass
class _Call:
    name: str
    generation: int
    called_s: float
    acked_s: float | None = None


@dataclass(frozen=True)
class ToolDelivery:
    """What the supervisor does with one :class:`ToolResult`.

    Attributes:
        event: ``tool:ack`` or ``tool:result``.
        timing: the event's timing fields, in ms from the ``tool:call``:
            ``after_ms`` (ack) or ``latency_ms`` and ``acked_after_ms`` (result).
        to_provider: send the result to the live provider (it asked and waits); False:
            it is queued for the next gap instead (:meth:`ToolCalls.next_follow_up`), or
            is an acknowledgement nobody waits for.
    """

    event: str
    timing: dict[str, Any] = field(default_factory=dict)
    to_provider: bool = False


class ToolCalls:
    """See the module docstring; one per call."""

    def __init__(self, agent: AgentSpec) -> None:
        self._agent = agent
        self._calls: dict[str, _Call] = {}
        self._follow_ups: deque[RespondNow] = deque()

    def called(self, request: ToolCallRequested, generation: int, now_s: float) -> None:
        """Provider instance ``generation`` asked for ``request`` at ``now_s``."""
        self._calls[request.call_id] = _Call(request.name, generation, now_s)

    def answered(self, result: ToolResult, generation: int, now_s: float) -> ToolDelivery:
        """``result`` arrived at ``now_s`` while instance ``generation`` is live."""
        call = self._calls.get(result.call_id) or _Call(result.name, generation, now_s)
        asked_live = call.generation == generation
        if result.pending:
            first = call.acked_s is None
            call.acked_s = now_s if first else call.acked_s
            self._calls[result.call_id] = call
            return ToolDelivery(
                "tool:ack",
                {"after_ms": _ms(now_s - call.called_s)},
                to_provider=first and asked_live,
            )
        self._calls.pop(result.call_id, None)
        timing: dict[str, Any] = {"latency_ms": _ms(now_s - call.called_s)}
        if call.acked_s is not None:
            timing["acked_after_ms"] = _ms(call.acked_s - call.called_s)
        if asked_live and call.acked_s is None:
            return ToolDelivery("tool:result", timing, to_provider=True)
        self._follow_ups.append(self._follow_up(result))
        return ToolDelivery("tool:result", timing)

    def owed(self) -> bool:
        """True while a follow-up waits for a gap."""
        return bool(self._follow_ups)

    def next_follow_up(self) -> RespondNow | None:
        """The oldest follow-up waiting, taken off the queue, or None."""
        return self._follow_ups.popleft() if self._follow_ups else None

    def _follow_up(self, result: ToolResult) -> RespondNow:
        if result.ok:
            note = (
                f"The result of {result.name} you were waiting for has arrived: "
                f"{result.output} Tell the caller now."
            )
        else:
            note = (
                f"{result.name} did not work: {result.output} "
                "Tell the caller, and offer what else you can do."
            )
        return RespondNow(note, self._spoken(result))

    def _spoken(self, result: ToolResult) -> str:
        """What a provider without a model says: the reply of the intent that uses the
        tool, with its result (the local intent policy's rule)."""
        if not result.ok:
            return TOOL_FAILED_REPLY
        intent = next((i for i in self._agent.intents if i.tool == result.name), None)
        if intent is None:
            return result.output
        return intent.render_reply(result.output.strip().rstrip("."))


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 1)
