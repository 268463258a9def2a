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


class Conversation:
    """An append-only record of the call's turns (pure: no I/O, no clock)."""

    def __init__(self) -> None:
        self._items: list[ConversationItem] = []
        self._calls: dict[str, Mapping[str, Any]] = {}  # call_id -> arguments

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
        self._calls[message.call_id] = message.arguments

    def tool_done(self, message: ToolResult) -> None:
        arguments = self._calls.pop(message.call_id, {})
        self._items.append(
            ToolRan(message.call_id, message.name, arguments, message.output, message.ok)
        )

    def items(self) -> tuple[ConversationItem, ...]:
        return tuple(self._items)

    def last_is_caller(self) -> bool:
        """True when the caller spoke last: their turn still waits for an answer."""
        return bool(self._items) and isinstance(self._items[-1], CallerSaid | CallerUnheard)
