"""The conversation so far, as text: what a provider starts from after a switch.

The supervisor records every finished caller turn, agent response and tool
call it routes; :meth:`Conversation.items` is what the next provider in the
fallback chain is given (:attr:`ProviderSetup.conversation`). Tool calls are
recorded with their results, so the next provider sees them as done and no
tool runs twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .messages import (
    AgentSaid,
    AgentTranscript,
    CallerSaid,
    CallerTranscript,
    CallerUnheard,
    ConversationItem,
    ToolCallRequested,
    ToolRan,
    ToolResult,
)

TOOL_RUNNING = (
    "This call is still running; its result will be given to you as soon as it arrives. "
    "Do not call it again."
)
"""The output a later provider sees for a tool call that has not answered yet."""


class Conversation:
    """An append-only record of the call's turns (pure: no I/O, no clock)."""

    def __init__(self) -> None:
        self._items: list[ConversationItem] = []
        self._calls: dict[str, tuple[str, Mapping[str, Any]]] = {}  # call_id -> name, arguments
        self._answered: dict[str, int] = {}  # call_id -> index of its ToolRan in _items

    def caller(self, message: CallerTranscript) -> None:
        if message.text.strip():
            self._items.append(CallerSaid(message.text))

    def caller_unheard(self, repeat: str) -> None:
        """The caller spoke and no transcript came (the provider failed first);
        ``repeat`` is what the next provider says to ask for it again."""
        if not (self._items and isinstance(self._items[-1], CallerUnheard)):
            self._items.append(CallerUnheard(repeat))

    def agent(self, message: AgentTranscript, *, interrupted: bool) -> None:
        if message.text.strip():
            self._items.append(AgentSaid(message.text, interrupted))

    def tool_called(self, message: ToolCallRequested) -> None:
        self._calls[message.call_id] = (message.name, message.arguments)

    def tool_done(self, message: ToolResult) -> None:
        """The tool's answer: an acknowledgement (``pending``) or its result. A result
        after an acknowledgement takes the acknowledgement's place, so a later
        provider sees the call once, with what it returned."""
        if message.pending:
            name, arguments = self._calls.get(message.call_id, (message.name, {}))
        else:
            name, arguments = self._calls.pop(message.call_id, (message.name, {}))
        ran = ToolRan(message.call_id, name, arguments, message.output, message.ok)
        index = self._answered.get(message.call_id)
        if index is not None:
            self._items[index] = ran
        else:
            self._answered[message.call_id] = len(self._items)
            self._items.append(ran)
        if not message.pending:
            self._answered.pop(message.call_id, None)

    def items(self) -> tuple[ConversationItem, ...]:
        """The conversation so far. A tool call still running with no answer yet is
        shown at the end as running (:data:`TOOL_RUNNING`), so the next provider does
        not ask for it again; its result follows."""
        running = tuple(
            ToolRan(call_id, name, arguments, TOOL_RUNNING)
            for call_id, (name, arguments) in self._calls.items()
            if call_id not in self._answered
        )
        return tuple(self._items) + running

    def last_is_caller(self) -> bool:
        """True when the caller spoke last: their turn still waits for an answer."""
        return bool(self._items) and isinstance(self._items[-1], CallerSaid | CallerUnheard)
