"""A fake OpenAI-compatible chat-completions server (``POST /v1/chat/completions``, streamed).

Speaks the wire format of :mod:`switchboard.codecs.chat_completions` (OpenAI's
``chat.completion.chunk`` over Server-Sent Events, ``data: [DONE]`` last),
scripted with :class:`~switchboard.testing.script.Script`:

- the turn is picked by counting the ``user`` messages in the request (the
  n-th caller turn gets ``script.turn(n)``);
- a turn's ``say`` streams as content chunks, word by word, every
  ``chunk_interval_ms``; a turn with a ``tool`` then streams the call as
  ``tool_calls`` deltas (id and name first, the arguments in two pieces) and
  ends with ``finish_reason: "tool_calls"``; the request that carries the
  tool's result (a last ``tool`` message) gets ``then_say``.

Faults (``connection`` counts requests: 1 is the first request to this fake;
``turn`` is the number of user messages): ``http_5xx`` answers with
``status``; ``error_event`` streams ``data: {"error": ...}`` instead of the
answer; ``stall`` sends the first chunk and then nothing, keeping the stream
open; ``drop`` cuts the connection after ``after_messages`` chunks;
``slow_first_byte`` waits ``delay_ms`` before the first chunk.

In tests: ``httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))``.
By hand: ``python -m switchboard.testing cascaded`` (with the fake Deepgram and TTS).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from switchboard.codecs.chat_completions import ToolCallDelta, encode_chunk, encode_sse

from .script import Script, Turn

__all__ = ["FakeChat"]

MODEL_FALLBACK = "fake-model"


@dataclass
class FakeChat:
    """The fake (see the module docstring); ``requests`` keeps each request's JSON body."""

    script: Script = field(default_factory=Script)
    chunk_interval_ms: float = 20.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[httpx.Headers] = field(default_factory=list)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        """Answer one HTTP request (an ``httpx.MockTransport`` handler)."""
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return _error(404, f"no route for {request.method} {request.url.path}")
        try:
            body = json.loads(request.content)
        except ValueError:
            return _error(400, "the body is not JSON")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not body.get("model"):
            return _error(400, "'model' and 'messages' are required")
        if body.get("stream") is not True:
            return _error(400, "this fake only streams: set 'stream': true")
        self.requests.append(body)
        self.headers.append(request.headers)
        connection = len(self.requests)
        n = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "user")
        fault = self.script.fault("http_5xx", connection=connection, turn=n)
        if fault is not None:
            return _error(fault.status, "the fake is failing on purpose", "server_error")
        after_tool = (
            bool(messages)
            and isinstance(messages[-1], dict)
            and (messages[-1].get("role") == "tool")
        )
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"},
            content=self._stream(body["model"], self.script.turn(n), after_tool, connection, n),
        )

    async def _stream(
        self, model: str, turn: Turn, after_tool: bool, connection: int, n: int
    ) -> AsyncIterator[bytes]:
        completion_id = f"chatcmpl-fake{len(self.requests)}"

        def chunk(**kw: Any) -> bytes:
            return encode_sse(encode_chunk(completion_id, model, created=1_700_000_000, **kw))

        chunks = [chunk(role=True, content="")]
        if after_tool or turn.tool is None:
            text = turn.then_say if after_tool else turn.say
            chunks += [chunk(content=piece) for piece in _pieces(text)]
            chunks.append(chunk(finish_reason="stop"))
        else:
            chunks += [chunk(content=piece) for piece in _pieces(turn.say)]
            call_id = f"call_fake{connection}"
            arguments = json.dumps(dict(turn.tool.arguments))
            half = len(arguments) // 2
            chunks += [
                chunk(tool_call=ToolCallDelta(0, call_id, turn.tool.name, "")),
                chunk(tool_call=ToolCallDelta(0, arguments=arguments[:half])),
                chunk(tool_call=ToolCallDelta(0, arguments=arguments[half:])),
                chunk(finish_reason="tool_calls"),
            ]
        chunks.append(encode_sse("[DONE]"))

        fault = {
            kind: self.script.fault(kind, connection=connection, turn=n)
            for kind in ("error_event", "stall", "drop", "slow_first_byte")
        }
        if fault["slow_first_byte"] is not None:
            await trio.sleep(fault["slow_first_byte"].delay_ms / 1000)
        if fault["error_event"] is not None:
            error = {"message": "The server had an error", "type": "server_error", "code": None}
            yield chunks[0]
            yield encode_sse(json.dumps({"error": error}))
            return
        for i, data in enumerate(chunks):
            drop = fault["drop"]
            if drop is not None and i >= drop.after_messages:
                raise httpx.RemoteProtocolError("the fake dropped the connection")
            if fault["stall"] is not None and i >= 1:
                await trio.sleep_forever()
            if i > 1:
                await trio.sleep(self.chunk_interval_ms / 1000)
            yield data


def _pieces(text: str) -> list[str]:
    """``text`` as a model streams it: one word (with its leading space) per chunk."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []


def _error(status: int, message: str, kind: str = "invalid_request_error") -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": kind, "code": None}})
