"""The ``cascaded`` provider's thinker: any OpenAI-compatible chat completions, streamed.

``POST {LLM_BASE_URL}/chat/completions`` with ``stream: true`` over httpx
(:mod:`switchboard.codecs.chat_completions`): the agent's instructions, the
conversation so far, and the tools in OpenAI's function format. Content
deltas go to the pipeline as they stream; streamed ``tool_calls`` are run
through the runtime and the model is asked again with their results.

Failures (shared with the voice, :func:`http_failures`): HTTP 5xx ->
``http_5xx``; another HTTP error or an ``{"error": ...}`` event ->
``error_event``; a connection lost or a stream cut short -> ``disconnect``;
no connection in time -> ``connect_timeout``; nothing read within the HTTP
client's read timeout -> ``stall``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import httpx
import structlog
import trio

from switchboard.codecs import chat_completions as chat
from switchboard.orchestrator.agents import AgentSpec

from ..messages import (
    UNHEARD_NOTE,
    AgentSaid,
    CallerSaid,
    CallerTranscript,
    CallerUnheard,
    ConversationItem,
    FailureKind,
    ToolRan,
)
from ..pipeline import CallTool, Say, StageFailed, ToolCall
from ..tape import CallTape

__all__ = [
    "ChatThinker",
    "check_status",
    "history_messages",
    "http_failures",
    "tool_definitions",
]

log = structlog.get_logger("switchboard.cascaded")

DRAIN_S: Final = 1.0
"""How long the rest of a stream that reported an error is read before giving up."""
MAX_TOOL_ROUNDS: Final = 4
"""Model calls per response at most (each round may run tools)."""


def tool_definitions(agent: AgentSpec) -> list[dict[str, Any]]:
    """:meth:`AgentSpec.function_tools` in OpenAI's chat-completions function-tool format."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters_json(),
            },
        }
        for t in agent.function_tools()
    ]


def history_messages(history: Sequence[ConversationItem]) -> list[dict[str, Any]]:
    """The conversation as chat messages (a tool run: the call, then its result)."""
    messages: list[dict[str, Any]] = []
    for item in history:
        if isinstance(item, CallerSaid):
            messages.append({"role": "user", "content": item.text})
        elif isinstance(item, CallerUnheard):
            messages.append({"role": "user", "content": UNHEARD_NOTE})
        elif isinstance(item, AgentSaid):
            if item.text:
                messages.append({"role": "assistant", "content": item.text})
        elif isinstance(item, ToolRan):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": json.dumps(dict(item.arguments))},
            }
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
    return messages


class ChatThinker:
    """Streamed chat completions with tools (see the module docstring).

    ``tape.provider(source, data)`` keeps each server-sent event's data as it
    arrives (the JSON chunk, or ``[DONE]``); nowhere by default.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str | None,
        model: str,
        instructions: str,
        tools: Sequence[Mapping[str, Any]] = (),
        *,
        tape: CallTape | None = None,
        source: str = "cascaded#1/llm",
    ) -> None:
        self.tape = tape if tape is not None else CallTape()
        self.source = source
        self.http = http
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self.system = {"role": "system", "content": instructions}
        self.tools = list(tools)

    async def __call__(
        self,
        history: Sequence[ConversationItem],
        utterance: CallerTranscript | None,
        say: Say,
        call_tool: CallTool,
    ) -> None:
        messages = [self.system, *history_messages(history)]
        for _ in range(MAX_TOOL_ROUNDS):
            content, calls = await self._complete(messages, say)
            if not calls:
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": content or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments_json},
                        }
                        for c in calls
                    ],
                }
            )
            for c in calls:
                result = await call_tool(ToolCall(c.name, c.arguments, c.id))
                messages.append({"role": "tool", "tool_call_id": c.id, "content": result.output})

    async def _complete(
        self, messages: list[dict[str, Any]], say: Say
    ) -> tuple[str, list[chat.ToolCallRequest]]:
        body = chat.chat_request(self.model, messages, self.tools)
        content = ""
        tools = chat.ToolCallAssembler()
        finished = False
        async with (
            http_failures("LLM"),
            self.http.stream("POST", self.url, json=body, headers=self.headers) as response,
        ):
            await check_status(response, "LLM")
            decoder = chat.SseDecoder()
            error: chat.StreamError | None = None
            # Read to the end even after an error event (briefly): leaving httpx's
            # byte iterators half-read leaks them until garbage collection.
            with trio.CancelScope() as drain:
                async for data in response.aiter_bytes():
                    for event in decoder.feed(data):
                        self.tape.provider(self.source, event.data)
                        parsed = _parse(event.data)
                        if error is not None or parsed is None:
                            continue
                        if isinstance(parsed, chat.StreamDone):
                            finished = True
                        elif isinstance(parsed, chat.StreamError):
                            error = parsed
                            drain.deadline = trio.current_time() + DRAIN_S
                        else:
                            finished = finished or parsed.finish_reason is not None
                            tools.feed(parsed.tool_calls)
                            if parsed.content:
                                content += parsed.content
                                await say(parsed.content)
        if error is not None:
            raise StageFailed("error_event", f"LLM stream error: {error.message}")
        if not finished:
            raise StageFailed("disconnect", "LLM stream ended before the answer did")
        try:
            return content, tools.calls() if tools else []
        except chat.ChatStreamError as exc:
            raise StageFailed("error_event", f"LLM tool call: {exc}") from exc


def _parse(data: str) -> chat.StreamData | None:
    try:
        return chat.parse_stream_data(data)
    except chat.ChatStreamError as exc:
        log.warning("unreadable chat completion chunk", error=str(exc))
        return None


@asynccontextmanager
async def http_failures(stage: str) -> AsyncIterator[None]:
    """Map httpx's errors to :class:`StageFailed`."""
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise StageFailed("connect_timeout", f"{stage}: connection timed out") from exc
    except httpx.ReadTimeout as exc:
        raise StageFailed("stall", f"{stage}: no data within the read timeout") from exc
    except httpx.TransportError as exc:
        raise StageFailed("disconnect", f"{stage}: connection lost: {exc!r}") from exc


async def check_status(response: httpx.Response, stage: str) -> None:
    if response.is_success:
        return
    detail = (await response.aread())[:200].decode(errors="replace")
    kind: FailureKind = "http_5xx" if response.status_code >= 500 else "error_event"
    raise StageFailed(kind, f"{stage} answered HTTP {response.status_code}: {detail}")
