"""What webhook and edge-function tools share: the request body and how an answer
becomes a :class:`~.invocation.ToolOutcome`.

The request body (JSON, UTF-8, compact), in the style of Vapi's server URL
tools and Retell's custom functions::

    {"tool": "book_table",
     "call_id": "call_abc123",                 # the model's tool call id
     "arguments": {"party_size": 4},           # validated against the tool's schema
     "call": {"session_id": "...", "tenant_id": "...", "tenant": "acme",
              "agent_id": "...", "agent": "receptionist",
              "call_sid": "CA...", "from": "+15550100", "to": "+15550199"}}

The answer: a 2xx status with a JSON body (or no body). The model is given
the JSON re-serialised compactly, at most :data:`MODEL_OUTPUT_BYTES` bytes,
cut with a note saying so; at most :data:`MAX_ANSWER_BYTES` are ever read.
Anything else is a failed outcome whose ``output`` is a sentence for the
model and whose ``error`` is its kind: ``timeout``, ``too_large``,
``http_status`` (``detail["status"]``), ``invalid_json``, ``refused`` (the
SSRF rules or a redirect, ``detail["reason"]``) or ``network``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final
from uuid import uuid5

from .address_policy import AddressPolicy
from .guarded_http import (
    DestinationRefused,
    GuardedHttp,
    GuardedHttpError,
    HttpAnswer,
    RedirectRefused,
)
from .invocation import MODEL_OUTPUT_BYTES, ToolInvocation, ToolOutcome, for_model

__all__ = [
    "MAX_ANSWER_BYTES",
    "MODEL_OUTPUT_BYTES",
    "answer_text",
    "call_endpoint",
    "delivery_id",
    "not_configured",
    "request_body",
    "tool_headers",
]

MAX_ANSWER_BYTES: Final = 256 * 1024
"""The most of an answer's body ever read; past it the answer is ``too_large``."""


_EXCERPT_CHARS: Final = 300
_RESERVED_HEADERS: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "content-type"}
)


def request_body(invocation: ToolInvocation) -> bytes:
    """The JSON body sent to the tool (see the module docstring), as UTF-8 bytes."""
    data = {
        "tool": invocation.name,
        "call_id": invocation.call_id,
        "arguments": dict(invocation.arguments),
        "call": invocation.context_json(),
    }
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=_thaw).encode()


def _thaw(value: object) -> object:
    """A read-only mapping (frozen arguments) as the dict JSON encodes."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


def delivery_id(invocation: ToolInvocation) -> str:
    """The delivery's id, ``msg_`` and 32 hex digits: the same for the same tool call
    of the same session (so a retry is recognised), different for every other one.

    Sent as ``webhook-id`` (Standard Webhooks) and ``Idempotency-Key``.
    """
    return f"msg_{uuid5(invocation.session_id, invocation.call_id).hex}"


def tool_headers(extra: Mapping[str, str], own: Mapping[str, str]) -> dict[str, str]:
    """The tool's declared headers, less framing ones, under the runtime's own ``own``
    (which win: a declared header never replaces a signature or the content type)."""
    headers = {k: v for k, v in extra.items() if k.lower() not in _RESERVED_HEADERS}
    lowered = {k.lower() for k in own}
    headers = {k: v for k, v in headers.items() if k.lower() not in lowered}
    return {**headers, "content-type": "application/json", **own}


async def call_endpoint(
    http: GuardedHttp,
    invocation: ToolInvocation,
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    policy: AddressPolicy,
    timeout_ms: int,
) -> ToolOutcome:
    """One guarded exchange and its outcome; never raises for the tool's failure."""
    try:
        answer = await http.exchange(
            method,
            url,
            headers=headers,
            content=body,
            policy=policy,
            timeout_s=timeout_ms / 1000,
            max_bytes=MAX_ANSWER_BYTES,
        )
    except GuardedHttpError as exc:
        return _failure(invocation.name, exc)
    return answer_outcome(invocation.name, answer)


def not_configured(tool: str, reason: str) -> ToolOutcome:
    """The outcome of a tool whose tenant settings cannot be used (nothing was sent)."""
    return ToolOutcome.failed(
        "not_configured",
        f"The {tool} tool is not set up correctly and was not called.",
        reason=reason,
    )


def _failure(tool: str, exc: GuardedHttpError) -> ToolOutcome:
    detail = {**exc.detail, "reason": str(exc)}
    sentence = {
        "timeout": f"The {tool} tool did not answer in time; it may or may not have acted.",
        "too_large": f"The {tool} tool's answer was too large to read.",
        "network": f"The {tool} tool could not be reached or did not answer properly.",
    }.get(exc.kind, f"The {tool} tool could not be called.")
    if isinstance(exc, RedirectRefused):
        sentence = f"The {tool} tool answered with a redirect, which is not followed."
    elif isinstance(exc, DestinationRefused):
        sentence = f"The {tool} tool was not called: {_excerpt(str(exc))}."
    return ToolOutcome.failed(exc.kind, sentence, **detail)


def answer_outcome(tool: str, answer: HttpAnswer) -> ToolOutcome:
    """How an answer reads to the model (see the module docstring)."""
    detail: dict[str, Any] = {
        "status": answer.status,
        "address": answer.address,
        "bytes": len(answer.body),
    }
    if not 200 <= answer.status < 300:
        said = _error_text(answer.body)
        return ToolOutcome.failed(
            "http_status",
            f"The {tool} tool failed (HTTP {answer.status})" + (f": {said}" if said else "") + ".",
            **detail,
            excerpt=_excerpt(answer.body.decode("utf-8", "replace")),
        )
    if not answer.body.strip():
        return ToolOutcome(True, "(the tool answered with no content)", detail=detail)
    try:
        value = json.loads(answer.body)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return ToolOutcome.failed(
            "invalid_json",
            f"The {tool} tool's answer could not be read (it was not JSON).",
            **detail,
            excerpt=_excerpt(answer.body.decode("utf-8", "replace")),
        )
    output, truncated = answer_text(value)
    return ToolOutcome(True, output, detail={**detail, "truncated": truncated})


def answer_text(value: object) -> tuple[str, bool]:
    """A JSON answer as the model's text (:func:`~.invocation.for_model`), and whether it
    was cut. A JSON string, or an object whose only key is ``result`` holding a string
    (Vapi's and Retell's answers), is given as that text, so an intent's reply can say
    it (``{result}``); anything else as compact JSON."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("result"), str):
        value = value["result"]
    if isinstance(value, str):
        return for_model(value.encode())
    return for_model(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _error_text(body: bytes) -> str:
    """The error message a JSON error body carries (``error``, ``message``, ``detail``)."""
    try:
        value = json.loads(body)
    except ValueError:
        return ""
    if isinstance(value, dict):
        for key in ("error", "message", "detail"):
            said = value.get(key)
            if isinstance(said, dict):
                said = said.get("message")
            if isinstance(said, str) and said.strip():
                return _excerpt(said.strip())
    return ""


def _excerpt(text: str) -> str:
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"
