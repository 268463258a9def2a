"""The browser call protocol: JSON text frames over ``WS /v1/voice``.

Source: Switchboard issue 6 ("Browser calls"); this module is its definition.
Every message is a JSON object with an ``event``. Audio is mono little-endian
PCM16, base64 in ``payload``, at the sample rate the client stated when
connecting (``?sample_rate=``, one of :data:`SAMPLE_RATES`, default 24000),
in both directions.

Client -> server::

    {"event": "audio", "payload": "<base64 PCM16>"}
    {"event": "text", "text": "..."}

Server -> client::

    {"event": "session", "session_id": "...", "sample_rate": 24000, "agent": "..."}
    {"event": "audio", "payload": "<base64 PCM16>", "response_id": "..."}
    {"event": "agent_start", "response_id": "...", "greeting": false}
    {"event": "agent_end", "response_id": "...", "interrupted": false}
    {"event": "transcript", "role": "caller" | "agent", "text": "...", "final": true}
    {"event": "tool_start", "call_id": "...", "name": "...", "arguments": {...}}
    {"event": "tool_end", "call_id": "...", "name": "...", "ok": true, "output": "..."}
    {"event": "audio_interrupted", "response_id": "..." | null, "heard_ms": 1234.5}
    {"event": "audio_end", "response_id": "..."}
    {"event": "timeline", "type": "provider.failed", "t_ms": 812.0, "detail": {...}}
    {"event": "error", "reason": "...", "detail": "..."}

``audio_end``: every audio chunk of the response has been sent.
``audio_interrupted``: the caller barged in; drop what is queued.
``timeline``: other call events worth showing (failovers, speech detected).

:func:`parse_inbound` / :func:`parse_outbound` raise :class:`BrowserProtocolError`
(a ``ValueError``) with a short ``reason`` for anything malformed.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode, b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .wire_text import quote, storable

SAMPLE_RATES: Final = (16000, 24000, 44100, 48000)
DEFAULT_SAMPLE_RATE: Final = 24000
MAX_AUDIO_BYTES: Final = 2 * 48000 * 2
"""The largest audio payload accepted: 2 s at 48 kHz."""
MAX_TEXT_CHARS: Final = 2000
MAX_INBOUND_CHARS: Final = 256 * 1024
"""The longest frame a browser may send: an audio message of :data:`MAX_AUDIO_BYTES`
in base64 and its JSON. A longer one is refused unread (``too_large``)."""


class BrowserProtocolError(ValueError):
    """A message that cannot be understood.

    Attributes:
        reason: one of ``invalid_json``, ``not_an_object``, ``unknown_event``,
            ``missing_field``, ``bad_field``, ``bad_base64``, ``odd_length``, ``too_large``.
        detail: what was wrong, in words.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_sample_rate(value: str | None) -> int:
    """The ``sample_rate`` query value (None: the default) in Hz.

    Raises:
        BrowserProtocolError: ``bad_field`` for anything but one of :data:`SAMPLE_RATES`.
    """
    if value is None or value == "":
        return DEFAULT_SAMPLE_RATE
    try:
        rate = int(value)
    except ValueError:
        rate = 0
    if rate not in SAMPLE_RATES:
        raise BrowserProtocolError(
            "bad_field", f"sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))}"
        )
    return rate


# -- client -> server ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioIn:
    """Caller audio: PCM16 bytes (an even number)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class TextIn:
    """A line the caller typed."""

    text: str


Inbound = AudioIn | TextIn


# -- server -> client ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    sample_rate: int
    agent: str


@dataclass(frozen=True, slots=True)
class AudioOut:
    pcm: bytes
    response_id: str


@dataclass(frozen=True, slots=True)
class AgentStart:
    response_id: str
    greeting: bool = False


@dataclass(frozen=True, slots=True)
class AgentEnd:
    response_id: str
    interrupted: bool = False


Role = Literal["caller", "agent"]


@dataclass(frozen=True, slots=True)
class Transcript:
    role: Role
    text: str
    final: bool = True


@dataclass(frozen=True, slots=True)
class ToolStart:
    call_id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolEnd:
    call_id: str
    name: str
    ok: bool
    output: str


@dataclass(frozen=True, slots=True)
class AudioInterrupted:
    response_id: str | None
    heard_ms: float


@dataclass(frozen=True, slots=True)
class AudioEnd:
    response_id: str


@dataclass(frozen=True, slots=True)
class Timeline:
    type: str
    t_ms: float
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Error:
    reason: str
    detail: str


Outbound = (
    SessionInfo
    | AudioOut
    | AgentStart
    | AgentEnd
    | Transcript
    | ToolStart
    | ToolEnd
    | AudioInterrupted
    | AudioEnd
    | Timeline
    | Error
)


# -- parsing -------------------------------------------------------------------


def _load(text: str | bytes) -> tuple[str, Mapping[str, Any]]:
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: Recursion
        raise BrowserProtocolError("invalid_json", quote(str(exc))) from None
    if not isinstance(message, dict):
        raise BrowserProtocolError(
            "not_an_object", f"expected a JSON object, got {type(message).__name__}"
        )
    event = message.get("event")
    if not isinstance(event, str):
        raise BrowserProtocolError("missing_field", "no 'event'")
    return event, message


def _get(m: Mapping[str, Any], key: str, kind: type | tuple[type, ...], event: str) -> Any:
    if key not in m:
        raise BrowserProtocolError("missing_field", f"'{event}' needs '{key}'")
    value = m[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BrowserProtocolError("bad_field", f"'{event}.{key}' has the wrong type")
    return value


def _pcm(m: Mapping[str, Any], event: str) -> bytes:
    text = _get(m, "payload", str, event)
    if len(text) > (MAX_AUDIO_BYTES * 4) // 3 + 4:
        raise BrowserProtocolError("too_large", f"audio payloads are at most {MAX_AUDIO_BYTES} B")
    try:
        data = b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BrowserProtocolError("bad_base64", f"'{event}.payload' is not base64") from None
    if len(data) % 2:
        raise BrowserProtocolError("odd_length", "PCM16 audio has an even number of bytes")
    return data


def parse_inbound(text: str | bytes) -> Inbound:
    """Parse one message a browser sends.

    A frame longer than :data:`MAX_INBOUND_CHARS` is refused unread; a ``text``
    must have 1 to :data:`MAX_TEXT_CHARS` characters and none that PostgreSQL
    cannot store (U+0000, a lone surrogate), since it is logged.

    Raises:
        BrowserProtocolError: see its ``reason`` values.
    """
    if len(text) > MAX_INBOUND_CHARS:
        raise BrowserProtocolError("too_large", f"a frame of {len(text)} characters")
    event, m = _load(text)
    if event == "audio":
        return AudioIn(_pcm(m, event))
    if event == "text":
        line = _get(m, "text", str, event)
        if not line.strip() or len(line) > MAX_TEXT_CHARS:
            raise BrowserProtocolError(
                "bad_field", f"'text.text' must have 1 to {MAX_TEXT_CHARS} characters"
            )
        if not storable(line):
            raise BrowserProtocolError("bad_field", "'text.text' holds U+0000 or a lone surrogate")
        return TextIn(line)
    raise BrowserProtocolError("unknown_event", f"unknown event '{quote(event, 40)}'")


def parse_outbound(text: str | bytes) -> Outbound:
    """Parse one message the server sends (what a client reads).

    Raises:
        BrowserProtocolError: see its ``reason`` values.
    """
    event, m = _load(text)
    if event == "audio":
        return AudioOut(_pcm(m, event), _get(m, "response_id", str, event))
    if event == "session":
        return SessionInfo(
            _get(m, "session_id", str, event),
            _get(m, "sample_rate", int, event),
            _get(m, "agent", str, event),
        )
    if event == "agent_start":
        return AgentStart(_get(m, "response_id", str, event), _get(m, "greeting", bool, event))
    if event == "agent_end":
        return AgentEnd(_get(m, "response_id", str, event), _get(m, "interrupted", bool, event))
    if event == "transcript":
        role = _get(m, "role", str, event)
        if role not in ("caller", "agent"):
            raise BrowserProtocolError("bad_field", "'transcript.role' is caller or agent")
        return Transcript(role, _get(m, "text", str, event), _get(m, "final", bool, event))
    if event == "tool_start":
        return ToolStart(
            _get(m, "call_id", str, event),
            _get(m, "name", str, event),
            _get(m, "arguments", dict, event),
        )
    if event == "tool_end":
        return ToolEnd(
            _get(m, "call_id", str, event),
            _get(m, "name", str, event),
            _get(m, "ok", bool, event),
            _get(m, "output", str, event),
        )
    if event == "audio_interrupted":
        rid = m.get("response_id")
        if rid is not None and not isinstance(rid, str):
            raise BrowserProtocolError("bad_field", "'audio_interrupted.response_id' is a string")
        return AudioInterrupted(rid, float(_get(m, "heard_ms", (int, float), event)))
    if event == "audio_end":
        return AudioEnd(_get(m, "response_id", str, event))
    if event == "timeline":
        return Timeline(
            _get(m, "type", str, event),
            float(_get(m, "t_ms", (int, float), event)),
            _get(m, "detail", dict, event),
        )
    if event == "error":
        return Error(_get(m, "reason", str, event), _get(m, "detail", str, event))
    raise BrowserProtocolError("unknown_event", f"unknown event {event[:40]!r}")


# -- encoding ------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def encode_inbound(message: Inbound) -> str:
    """Encode a client -> server message (for clients and tests)."""
    if isinstance(message, AudioIn):
        return json.dumps({"event": "audio", "payload": _b64(message.pcm)})
    return json.dumps({"event": "text", "text": message.text})


def encode_outbound(message: Outbound) -> str:
    """Encode a server -> client message as its JSON text.

    Raises:
        ValueError: a ``timeline`` detail or tool ``arguments`` that are not JSON.
    """
    body: dict[str, Any]
    if isinstance(message, AudioOut):
        body = {"event": "audio", "payload": _b64(message.pcm), "response_id": message.response_id}
    elif isinstance(message, SessionInfo):
        body = {
            "event": "session",
            "session_id": message.session_id,
            "sample_rate": message.sample_rate,
            "agent": message.agent,
        }
    elif isinstance(message, AgentStart):
        body = {"event": "agent_start", "response_id": message.response_id}
        body["greeting"] = message.greeting
    elif isinstance(message, AgentEnd):
        body = {"event": "agent_end", "response_id": message.response_id}
        body["interrupted"] = message.interrupted
    elif isinstance(message, Transcript):
        body = {"event": "transcript", "role": message.role, "text": message.text}
        body["final"] = message.final
    elif isinstance(message, ToolStart):
        body = {"event": "tool_start", "call_id": message.call_id, "name": message.name}
        body["arguments"] = dict(message.arguments)
    elif isinstance(message, ToolEnd):
        body = {"event": "tool_end", "call_id": message.call_id, "name": message.name}
        body.update(ok=message.ok, output=message.output)
    elif isinstance(message, AudioInterrupted):
        body = {"event": "audio_interrupted", "response_id": message.response_id}
        body["heard_ms"] = message.heard_ms
    elif isinstance(message, AudioEnd):
        body = {"event": "audio_end", "response_id": message.response_id}
    elif isinstance(message, Timeline):
        body = {"event": "timeline", "type": message.type, "t_ms": message.t_ms}
        body["detail"] = dict(message.detail)
    else:
        body = {"event": "error", "reason": message.reason, "detail": message.detail}
    return json.dumps(body, allow_nan=False)
