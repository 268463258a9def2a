"""A tool executor on its own, for tests: send it tool calls, read its answers and events.

Import it as ``from tool_harness import ExecutorHarness``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any
from uuid import uuid4

import trio

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.messages import (
    CallEvent,
    ToolCallRequested,
    ToolResult,
    ToSupervisor,
    ToTools,
)
from switchboard.actors.tool_executor import ToolExecutor
from switchboard.actors.tools.invocation import ToolRunner
from switchboard.actors.tools.kit import ToolKit
from switchboard.orchestrator.agents import AgentSpec


class ExecutorHarness:
    """One call's executor for ``agent``; ``runners`` take the place of the agent's tools."""

    def __init__(
        self,
        agent: AgentSpec,
        runners: Mapping[str, ToolRunner] | None = None,
        kit: ToolKit | None = None,
        **call: Any,
    ) -> None:
        kit = kit or ToolKit()
        if runners is not None:
            kit = replace(kit, runners=dict(runners))
        self.ctx = CallContext(uuid4(), uuid4(), uuid4(), agent, t0=0.0, **call)
        self._to_tools, inbox = trio.open_memory_channel[ToTools](16)
        to_supervisor, self._answers = trio.open_memory_channel[ToSupervisor](16)
        events_send, self._events = trio.open_memory_channel[CallEvent](100)
        self.executor = ToolExecutor(
            self.ctx,
            inbox=inbox,
            to_supervisor=to_supervisor,
            events=EventSink(self.ctx, events_send),
            kit=kit,
        )
        self.answers: list[tuple[float, ToolResult]] = []  # acknowledgements included
        self.events: list[CallEvent] = []

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ExecutorHarness]:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.executor.run)
            nursery.start_soon(self._collect_events)
            yield self
            await self._to_tools.aclose()

    async def _collect_events(self) -> None:
        async for event in self._events:
            self.events.append(event)

    async def ask(self, call_id: str, name: str, arguments: Mapping[str, Any]) -> None:
        await self._to_tools.send(ToolCallRequested(call_id, name, dict(arguments), "r1"))

    async def result_of(self, call_id: str) -> ToolResult:
        """The final answer to ``call_id`` (acknowledgements are kept in :attr:`answers`)."""
        for _, answer in self.answers:
            if answer.call_id == call_id and not answer.pending:
                return answer
        async for message in self._answers:
            assert isinstance(message, ToolResult)
            self.answers.append((trio.current_time(), message))
            if message.call_id == call_id and not message.pending:
                return message
        raise AssertionError(f"no result for {call_id}")

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Ask for ``name`` and wait for its final answer."""
        call_id = f"call_{len(self.answers) + 1}_{name}"
        await self.ask(call_id, name, arguments)
        return await self.result_of(call_id)
