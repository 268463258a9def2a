"""OpenAI-compatible chat completions, streamed (``POST /v1/chat/completions``, ``stream: true``).

Pure code. Source: OpenAI's API reference ("The chat completion chunk
object") and the ``openai`` SDK's ``ChatCompletionChunk`` type; Groq,
OpenRouter, vLLM and Ollama stream the same shape. The response body is
Server-Sent Events (the WHATWG HTML "event stream" format): ``data: <JSON
chunk>`` events, then ``data: [DONE]``. A chunk's ``choices[0].delta`` holds
a piece of ``content`` and/or ``tool_calls`` deltas: the first delta of a
call carries its ``index``, ``id`` and ``function.name``, later ones append to
``function.arguments`` (a JSON text) by ``index``. ``finish_reason`` is
``stop``, ``length``, ``tool_calls`` or ``content_filter`` on the last chunk.
Some servers report a failure mid-stream as a ``data: {"error": {...}}``
event.

- :class:`SseDecoder`: body bytes, in any chunking -> :class:`SseEvent`.
- :func:`parse_stream_data`: one event's data -> :class:`ChatChunk`,
  :class:`StreamDone` or :class:`StreamError`, or :class:`ChatStreamError`.
- :class:`ToolCallAssembler`: tool-call deltas -> whole :class:`ToolCallRequest`.
- :func:`chat_request`: the request body; ``encode_*``: chunks for fakes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "ChatChunk",
    "ChatStreamError",
    "SseDecoder",
    "SseEvent",
    "StreamDone",
    "StreamError",
    "ToolCallAssembler",
    "ToolCallDelta",
    "ToolCallRequest",
    "chat_request",
    "encode_chunk",
    "encode_sse",
    "parse_stream_data",
]

DONE: Final = "[DONE]"


class ChatStreamError(ValueError):
    """Stream data that is not a chat completion chunk (the text says what is wrong)."""


# -- Server-Sent Events ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event: ``data`` lines joined by ``\\n``; ``event`` is ``message`` unless named."""

    data: str
    event: str = "message"


class SseDecoder:
    """Incremental Server-Sent Events parser (WHATWG HTML, "Parsing an event stream").

    Lines end in ``\\r\\n``, ``\\n`` or ``\\r``; a blank line dispatches the
    event; ``:`` starts a comment; ``id`` and ``retry`` are ignored. Bytes
    must be UTF-8 (invalid bytes become U+FFFD).
    """

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Add body bytes; return the events they completed."""
        self._pending += chunk
        events: list[SseEvent] = []
        while True:
            cut = _line_end(self._pending)
            if cut is None:
                return events
            end, skip = cut
            line = self._pending[:end].decode("utf-8", errors="replace")
            self._pending = self._pending[end + skip :]
            event = self._line(line)
            if event is not None:
                events.append(event)

    def flush(self) -> list[SseEvent]:
        """At the end of the body: the last event if it was not followed by a blank line."""
        events = self.feed(b"\n") if self._pending else []
        event = self._line("")
        return [*events, event] if event is not None else events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SseEvent("\n".join(self._data), self._event or "message")
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """Where the first line ends and how long its terminator is (None: no full line)."""
    for i, byte in enumerate(buffer):
        if byte == 0x0A:
            return i, 1
        if byte == 0x0D:
            if i + 1 == len(buffer):
                return None  # a "\n" may follow in the next chunk
            return i, 2 if buffer[i + 1] == 0x0A else 1
    return None


def encode_sse(data: str) -> bytes:
    """One ``data:`` event (a JSON text has no line breaks)."""
    return b"".join(b"data: " + line.encode() + b"\n" for line in data.split("\n")) + b"\n"


# -- chunks ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call: ``index`` says which; ``id``/``name`` come in its first piece."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """One ``chat.completion.chunk`` (its first choice)."""

    content: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class StreamDone:
    """``data: [DONE]``: the stream ended normally."""


@dataclass(frozen=True, slots=True)
class StreamError:
    """An ``{"error": {...}}`` event: the server failed mid-stream."""

    message: str
    type: str = ""
    code: str = ""


StreamData = ChatChunk | StreamDone | StreamError


def parse_stream_data(data: str) -> StreamData:
    """One SSE event's data -> a chunk, the end of the stream, or the server's error.

    A chunk without choices (a usage-only chunk) is an empty :class:`ChatChunk`.

    Raises:
        ChatStreamError: not JSON, not an object, or a field of the wrong type.
    """
    if data.strip() == DONE:
        return StreamDone()
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise ChatStreamError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ChatStreamError(f"expected a JSON object, got {type(obj).__name__}")
    if "error" in obj:
        error = obj["error"]
        if isinstance(error, dict):
            return StreamError(
                str(error.get("message") or "unknown error"),
                str(error.get("type") or ""),
                str(error.get("code") or ""),
            )
        return StreamError(str(error))
    choices = obj.get("choices")
    if choices is None or choices == []:
        return ChatChunk()
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise ChatStreamError("'choices' must be a list of objects")
    choice = choices[0]
    delta = choice.get("delta") or {}
    if not isinstance(delta, dict):
        raise ChatStreamError("'delta' must be an object")
    content = delta.get("content") or ""
    if not isinstance(content, str):
        raise ChatStreamError(f"'content' must be a string, got {content!r:.60}")
    finish = choice.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise ChatStreamError(f"'finish_reason' must be a string, got {finish!r:.60}")
    return ChatChunk(content, _tool_call_deltas(delta.get("tool_calls")), finish)


def _tool_call_deltas(raw: object) -> tuple[ToolCallDelta, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ChatStreamError("'tool_calls' must be a list")
    deltas = []
    for item in raw:
        if not isinstance(item, dict):
            raise ChatStreamError("a tool call delta must be an object")
        index = item.get("index", 0)
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ChatStreamError(f"tool call 'index' must be a non-negative integer: {index!r}")
        function = item.get("function") or {}
        if not isinstance(function, dict):
            raise ChatStreamError("tool call 'function' must be an object")
        call_id, name, arguments = item.get("id"), function.get("name"), function.get("arguments")
        for key, value in (("id", call_id), ("name", name), ("arguments", arguments)):
            if value is not None and not isinstance(value, str):
                raise ChatStreamError(f"tool call {key!r} must be a string, got {value!r:.60}")
        deltas.append(ToolCallDelta(index, call_id, name, arguments or ""))
    return tuple(deltas)


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A whole tool call: ``arguments`` parsed from its JSON text."""

    id: str
    name: str
    arguments: Mapping[str, Any]
    arguments_json: str


@dataclass
class ToolCallAssembler:
    """Joins :class:`ToolCallDelta` pieces by ``index`` into :class:`ToolCallRequest`."""

    _parts: dict[int, list[str]] = field(default_factory=dict)

    def feed(self, deltas: Sequence[ToolCallDelta]) -> None:
        for d in deltas:
            call_id, name, arguments = self._parts.setdefault(d.index, ["", "", ""])
            self._parts[d.index] = [
                call_id or d.id or "",
                name or d.name or "",
                arguments + d.arguments,
            ]

    def __bool__(self) -> bool:
        return bool(self._parts)

    def calls(self) -> list[ToolCallRequest]:
        """The calls in index order.

        Raises:
            ChatStreamError: a call without a name, or arguments that are not a JSON object.
        """
        calls = []
        for index in sorted(self._parts):
            call_id, name, arguments = self._parts[index]
            if not name:
                raise ChatStreamError(f"tool call {index} has no function name")
            try:
                parsed = json.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                raise ChatStreamError(
                    f"tool call {name!r}: arguments are not JSON: {exc}"
                ) from None
            if not isinstance(parsed, dict):
                raise ChatStreamError(f"tool call {name!r}: arguments must be a JSON object")
            calls.append(ToolCallRequest(call_id or f"call_{index}", name, parsed, arguments))
        return calls


# -- requests and (for fakes) chunks -------------------------------------------------


def chat_request(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The JSON body of a streamed chat completion (tools in OpenAI's function format)."""
    body: dict[str, Any] = {"model": model, "messages": list(messages), "stream": True}
    if tools:
        body["tools"] = list(tools)
        body["tool_choice"] = "auto"
    return body


def encode_chunk(
    completion_id: str,
    model: str,
    *,
    created: int = 0,
    content: str | None = None,
    role: bool = False,
    tool_call: ToolCallDelta | None = None,
    finish_reason: str | None = None,
) -> str:
    """A ``chat.completion.chunk`` JSON text with one choice (as OpenAI streams it)."""
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    if tool_call is not None:
        call: dict[str, Any] = {"index": tool_call.index, "function": {}}
        if tool_call.id is not None:
            call["id"] = tool_call.id
            call["type"] = "function"
        if tool_call.name is not None:
            call["function"]["name"] = tool_call.name
        call["function"]["arguments"] = tool_call.arguments
        delta["tool_calls"] = [call]
    return json.dumps(
        {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )
