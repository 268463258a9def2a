"""OpenAI Realtime: the JSON events of a Realtime WebSocket session, both directions.

Source: OpenAI API reference, "Realtime: client events" and "Realtime: server
events" (https://platform.openai.com/docs/api-reference/realtime), as typed in
the ``openai`` SDK (``openai.types.realtime.RealtimeClientEvent`` and
``RealtimeServerEvent``; the beta interface in ``openai.types.beta.realtime``).

Pure code: JSON text in, typed frozen dataclasses out, and back. Both
directions are here, so a client of OpenAI (the ``openai-realtime`` provider),
a server that speaks the protocol (the runtime's ``/v1/realtime``) and the
fake in ``switchboard.testing`` share one definition.

Names: the GA interface first. Parsing also accepts the beta names
(``response.audio.delta``, ``response.audio_transcript.delta``,
``response.text.delta``, session fields ``input_audio_format: "g711_ulaw"``,
``turn_detection`` at the top of the session, content parts ``text``/``audio``)
and maps them onto the same classes; :func:`encode_client_event` and
:func:`encode_server_event` write either dialect (``dialect="beta"`` for a peer
that connected with ``OpenAI-Beta: realtime=v1``).

Audio is bytes in the dataclasses and base64 on the wire. Formats
(:class:`WireAudioFormat`): ``{"type": "audio/pcmu"}`` (beta ``g711_ulaw``),
G.711 mu-law 8 kHz; ``{"type": "audio/pcma"}`` (``g711_alaw``); ``{"type":
"audio/pcm", "rate": 24000}`` (``pcm16``), little-endian PCM16 at 24 kHz.

Errors: every parser raises :class:`RealtimeEventError` (a ``ValueError``)
with a ``reason`` (``invalid_json``, ``not_an_object``, ``missing_field``,
``bad_field``, ``bad_base64``) for anything malformed. An event of a type not
modelled here parses to :class:`UnknownEvent` instead.
"""

from __future__ import annotations

import binascii
import json
import math
from base64 import b64decode, b64encode
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from . import _realtime_audio as audio_wire
from .wire_text import storable

__all__ = [
    "MAX_CLIENT_EVENT_CHARS",
    "PCM16_24K",
    "PCMU_8K",
    "ClientEvent",
    "ContentPart",
    "ConversationItemAdded",
    "ConversationItemCreate",
    "ConversationItemCreated",
    "ConversationItemDone",
    "ConversationItemTruncate",
    "ConversationItemTruncated",
    "Dialect",
    "ErrorEvent",
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "FunctionTool",
    "InputAudioBufferAppend",
    "InputAudioBufferClear",
    "InputAudioBufferCleared",
    "InputAudioBufferCommit",
    "InputAudioBufferCommitted",
    "InputAudioBufferSpeechStarted",
    "InputAudioBufferSpeechStopped",
    "InputAudioTranscriptionCompleted",
    "Item",
    "MessageItem",
    "RealtimeEventError",
    "ResponseCancel",
    "ResponseCreate",
    "ResponseCreated",
    "ResponseDone",
    "ResponseFunctionCallArgumentsDelta",
    "ResponseFunctionCallArgumentsDone",
    "ResponseInfo",
    "ResponseOutputAudioDelta",
    "ResponseOutputAudioDone",
    "ResponseOutputAudioTranscriptDelta",
    "ResponseOutputAudioTranscriptDone",
    "ResponseOutputItemAdded",
    "ResponseOutputItemDone",
    "ResponseParams",
    "ServerEvent",
    "SessionConfig",
    "SessionCreated",
    "SessionUpdate",
    "SessionUpdated",
    "TurnDetection",
    "UnknownEvent",
    "WireAudioFormat",
    "encode_client_event",
    "encode_server_event",
    "parse_client_event",
    "parse_server_event",
]

Dialect = Literal["ga", "beta"]
"""``ga``: the generally available interface; ``beta``: ``OpenAI-Beta: realtime=v1``."""


MAX_CLIENT_EVENT_CHARS: Final = 1024 * 1024
"""The longest client event read (``too_large`` beyond): an ``input_audio_buffer.append``
of about 16 s of PCM16 at 24 kHz. OpenAI takes appends of up to 15 MiB; a client of
this runtime streams audio in chunks instead."""


class RealtimeEventError(ValueError):
    """A Realtime event that cannot be understood.

    Attributes:
        reason: ``invalid_json``, ``not_an_object``, ``missing_field``,
            ``bad_field``, ``bad_base64`` or ``too_large`` (over
            :data:`MAX_CLIENT_EVENT_CHARS`, client events only).
        detail: what was wrong, naming the field (``response.output_audio.delta.delta``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# -- shared parts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireAudioFormat:
    """An audio format of the session: ``pcmu``/``pcma`` at 8000 Hz, ``pcm16`` at 24000 Hz."""

    encoding: Literal["pcmu", "pcma", "pcm16"]
    sample_rate: int


PCMU_8K: Final = WireAudioFormat("pcmu", 8000)
PCMA_8K: Final = WireAudioFormat("pcma", 8000)
PCM16_24K: Final = WireAudioFormat("pcm16", 24000)

_GA_FORMATS: Final = {"audio/pcmu": PCMU_8K, "audio/pcma": PCMA_8K, "audio/pcm": PCM16_24K}
_BETA_FORMATS: Final = {"g711_ulaw": PCMU_8K, "g711_alaw": PCMA_8K, "pcm16": PCM16_24K}


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnDetection:
    """``audio.input.turn_detection`` (beta: ``turn_detection``).

    ``type`` ``"none"`` is turn detection switched off (``null`` on the wire).
    Times in ms; ``threshold`` 0.0-1.0; ``eagerness`` for ``semantic_vad``.
    """

    type: Literal["server_vad", "semantic_vad", "none"]
    silence_duration_ms: int | None = None
    prefix_padding_ms: int | None = None
    threshold: float | None = None
    eagerness: str | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionTool:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """The session's configuration; None is a field not given (left as it is).

    Attributes:
        input_format, output_format: ``audio.input.format`` / ``audio.output.format``.
        voice: ``audio.output.voice``.
        transcription_model: ``audio.input.transcription.model`` (input
            transcription is on when set).
        tools: function tools (``()`` clears them).
        id, model: as the server reports them in ``session.created``.
    """

    instructions: str | None = None
    voice: str | None = None
    input_format: WireAudioFormat | None = None
    output_format: WireAudioFormat | None = None
    turn_detection: TurnDetection | None = None
    transcription_model: str | None = None
    tools: tuple[FunctionTool, ...] | None = None
    tool_choice: str | None = None
    output_modalities: tuple[str, ...] | None = None
    model: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentPart:
    """One part of a message: ``type`` in GA terms (``input_text``, ``input_audio``,
    ``output_text``, ``output_audio``); ``audio`` is the raw bytes when present."""

    type: str
    text: str | None = None
    transcript: str | None = None
    audio: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageItem:
    role: Literal["user", "assistant", "system"]
    content: tuple[ContentPart, ...] = ()
    id: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCallItem:
    """The model's call of function ``name``; ``arguments`` is JSON text."""

    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCallOutputItem:
    """The result of call ``call_id``, as text."""

    call_id: str
    output: str
    id: str | None = None


Item = MessageItem | FunctionCallItem | FunctionCallOutputItem


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseParams:
    """``response.create``'s ``response``: per-response overrides (None: the session's)."""

    instructions: str | None = None
    output_modalities: tuple[str, ...] | None = None
    conversation: str | None = None
    metadata: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseInfo:
    """A response object (``response.created``, ``response.done``).

    ``status``: ``in_progress``, ``completed``, ``cancelled``, ``incomplete``,
    ``failed``; ``status_reason`` e.g. ``turn_detected``, ``client_cancelled``.
    """

    id: str
    status: str = "in_progress"
    status_reason: str | None = None
    output: tuple[Item, ...] = ()
    metadata: Mapping[str, str] | None = None


# -- client -> server --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUpdate:
    session: SessionConfig
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferAppend:
    """Caller audio, in the session's ``input_format``."""

    audio: bytes
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferCommit:
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferClear:
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemCreate:
    item: Item
    previous_item_id: str | None = None
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemTruncate:
    """Cut an assistant item's audio at ``audio_end_ms`` (what the user heard)."""

    item_id: str
    content_index: int
    audio_end_ms: int
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCreate:
    response: ResponseParams | None = None
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCancel:
    response_id: str | None = None
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event of a type not modelled here: its ``type`` and the whole JSON object."""

    type: str
    data: Mapping[str, Any]


ClientEvent = (
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemTruncate
    | ResponseCreate
    | ResponseCancel
    | UnknownEvent
)


# -- server -> client --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCreated:
    session: SessionConfig
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUpdated:
    session: SessionConfig
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferSpeechStarted:
    """Server VAD heard speech start at ``audio_start_ms`` of the input audio."""

    audio_start_ms: int
    item_id: str
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferSpeechStopped:
    audio_end_ms: int
    item_id: str
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferCommitted:
    item_id: str
    previous_item_id: str | None = None
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioBufferCleared:
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemCreated:
    """``conversation.item.created`` (beta; GA sends ``.added`` and ``.done``)."""

    item: Item
    previous_item_id: str | None = None
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemAdded:
    item: Item
    previous_item_id: str | None = None
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemDone:
    item: Item
    previous_item_id: str | None = None
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationItemTruncated:
    item_id: str
    content_index: int
    audio_end_ms: int
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputAudioTranscriptionCompleted:
    """``conversation.item.input_audio_transcription.completed``: what the user said."""

    item_id: str
    content_index: int
    transcript: str
    usage_seconds: float = 0.0
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseCreated:
    response: ResponseInfo
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseDone:
    response: ResponseInfo
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputItemAdded:
    response_id: str
    output_index: int
    item: Item
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputItemDone:
    response_id: str
    output_index: int
    item: Item
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioDelta:
    """Agent audio (beta ``response.audio.delta``), in the session's ``output_format``."""

    response_id: str
    item_id: str
    delta: bytes
    output_index: int = 0
    content_index: int = 0
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioDone:
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioTranscriptDelta:
    response_id: str
    item_id: str
    delta: str
    output_index: int = 0
    content_index: int = 0
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseOutputAudioTranscriptDone:
    """The full transcript of one audio part of a response."""

    response_id: str
    item_id: str
    transcript: str
    output_index: int = 0
    content_index: int = 0
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFunctionCallArgumentsDelta:
    response_id: str
    item_id: str
    call_id: str
    delta: str
    output_index: int = 0
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFunctionCallArgumentsDone:
    """The model calls ``name`` with ``arguments`` (JSON text)."""

    response_id: str
    item_id: str
    call_id: str
    name: str
    arguments: str
    output_index: int = 0
    event_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent:
    """``error``. ``error_type`` ``server_error`` is the server's fault; others
    (``invalid_request_error``) the client's. ``client_event_id`` names the
    client event that caused it, if any."""

    error_type: str
    message: str
    code: str | None = None
    param: str | None = None
    client_event_id: str | None = None
    event_id: str = ""


ServerEvent = (
    SessionCreated
    | SessionUpdated
    | InputAudioBufferSpeechStarted
    | InputAudioBufferSpeechStopped
    | InputAudioBufferCommitted
    | InputAudioBufferCleared
    | ConversationItemCreated
    | ConversationItemAdded
    | ConversationItemDone
    | ConversationItemTruncated
    | InputAudioTranscriptionCompleted
    | ResponseCreated
    | ResponseDone
    | ResponseOutputItemAdded
    | ResponseOutputItemDone
    | ResponseOutputAudioDelta
    | ResponseOutputAudioDone
    | ResponseOutputAudioTranscriptDelta
    | ResponseOutputAudioTranscriptDone
    | ResponseFunctionCallArgumentsDelta
    | ResponseFunctionCallArgumentsDone
    | ErrorEvent
    | UnknownEvent
)

_BETA_SERVER_NAMES: Final = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
}
_GA_TO_BETA_SERVER_NAMES: Final = {ga: beta for beta, ga in _BETA_SERVER_NAMES.items()}
_BETA_CONTENT: Final = {"text": "output_text", "audio": "output_audio"}
_GA_TO_BETA_CONTENT: Final = {ga: beta for beta, ga in _BETA_CONTENT.items()}


# -- reading JSON ------------------------------------------------------------------------

_T = TypeVar("_T")


class _Obj:
    """A JSON object being read, with its path for error messages."""

    __slots__ = ("data", "where")

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise RealtimeEventError("bad_field", f"{where} must be an object")
        self.data: dict[str, Any] = data
        self.where = where

    def _get(self, key: str, check: Callable[[Any], bool], what: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None:
            if required:
                raise RealtimeEventError("missing_field", f"{self.where}.{key} is missing")
            return None
        if not check(value):
            raise RealtimeEventError("bad_field", f"{self.where}.{key} must be {what}")
        return value

    def req_str(self, key: str) -> str:
        value: str = self._get(key, lambda v: isinstance(v, str), "a string", True)
        return value

    def opt_str(self, key: str) -> str | None:
        value: str | None = self._get(key, lambda v: isinstance(v, str), "a string", False)
        return value

    def req_int(self, key: str, default: int | None = None) -> int:
        value = self._get(key, _is_integral, "an integer within +-2**53", default is None)
        return default if value is None and default is not None else int(value)

    def opt_int(self, key: str) -> int | None:
        value = self._get(key, _is_integral, "an integer within +-2**53", False)
        return None if value is None else int(value)

    def opt_float(self, key: str) -> float | None:
        value = self._get(key, _is_number, "a finite number", False)
        return None if value is None else float(value)

    def opt_bool(self, key: str) -> bool | None:
        value: bool | None = self._get(key, lambda v: isinstance(v, bool), "a boolean", False)
        return value

    def obj(self, key: str) -> _Obj:
        return _Obj(self._get(key, lambda v: True, "", True), f"{self.where}.{key}")

    def opt_obj(self, key: str) -> _Obj | None:
        value = self.data.get(key)
        return None if value is None else _Obj(value, f"{self.where}.{key}")

    def seq(self, key: str, read: Callable[[Any, str], _T]) -> tuple[_T, ...] | None:
        value = self._get(key, lambda v: isinstance(v, list), "a list", False)
        if value is None:
            return None
        return tuple(read(v, f"{self.where}.{key}[{i}]") for i, v in enumerate(value))

    def str_map(self, key: str) -> dict[str, str] | None:
        value = self._get(key, lambda v: isinstance(v, dict), "an object", False)
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value.values()):
            raise RealtimeEventError("bad_field", f"{self.where}.{key} values must be strings")
        return dict(value)

    def b64(self, key: str) -> bytes:
        return _b64decode(self.req_str(key), f"{self.where}.{key}")

    def opt_b64(self, key: str) -> bytes | None:
        text = self.opt_str(key)
        return None if text is None else _b64decode(text, f"{self.where}.{key}")


MAX_SAFE_INTEGER: Final = 2**53
"""Integers are accepted within +-2**53, the range every JSON peer reads exactly
(RFC 7493, "I-JSON", section 2.2); a 400-digit number is a bad field, not an int."""


def _is_integral(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    if isinstance(v, float) and not v.is_integer():  # NaN and Infinity included
        return False
    return -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _b64decode(text: str, where: str) -> bytes:
    try:
        return b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RealtimeEventError("bad_base64", f"{where} is not valid base64") from None


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def _load(text: str | bytes) -> tuple[str, _Obj]:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RealtimeEventError("invalid_json", str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise RealtimeEventError(
            "not_an_object", f"expected a JSON object, got {type(data).__name__}"
        )
    type_ = data.get("type")
    if not isinstance(type_, str):
        raise RealtimeEventError("missing_field", "the event has no 'type'")
    return type_, _Obj(data, type_)


def _str_or_list_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RealtimeEventError("bad_field", f"{where} must be a string")
    return value


def _format(value: Any, where: str) -> WireAudioFormat:
    if isinstance(value, str):  # beta: "g711_ulaw", "pcm16"
        fmt = _BETA_FORMATS.get(value)
    elif isinstance(value, dict):
        kind = value.get("type")
        fmt = _GA_FORMATS.get(kind) if isinstance(kind, str) else None
        rate = value.get("rate")
        if fmt is PCM16_24K and rate not in (None, 24000):
            raise RealtimeEventError("bad_field", f"{where}.rate must be 24000")
    else:
        fmt = None
    if fmt is None:
        raise RealtimeEventError("bad_field", f"{where} is not a known audio format")
    return fmt


def _turn_detection(value: Any, where: str) -> TurnDetection:
    o = _Obj(value, where)
    kind = o.req_str("type")
    if kind not in ("server_vad", "semantic_vad"):
        raise RealtimeEventError("bad_field", f"{where}.type must be server_vad or semantic_vad")
    return TurnDetection(
        type=kind,  # type: ignore[arg-type]  # checked above
        silence_duration_ms=o.opt_int("silence_duration_ms"),
        prefix_padding_ms=o.opt_int("prefix_padding_ms"),
        threshold=o.opt_float("threshold"),
        eagerness=o.opt_str("eagerness"),
        create_response=o.opt_bool("create_response"),
        interrupt_response=o.opt_bool("interrupt_response"),
    )


def _tool(value: Any, where: str) -> FunctionTool:
    o = _Obj(value, where)
    if o.data.get("type", "function") != "function":
        raise RealtimeEventError("bad_field", f"{where}.type: only function tools are supported")
    parameters = o.data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RealtimeEventError("bad_field", f"{where}.parameters must be an object")
    return FunctionTool(
        name=o.req_str("name"), description=o.opt_str("description") or "", parameters=parameters
    )


def _session(o: _Obj) -> SessionConfig:
    audio = o.opt_obj("audio")
    inp = audio.opt_obj("input") if audio else None
    out = audio.opt_obj("output") if audio else None

    def pick(ga: tuple[_Obj | None, str], beta: str) -> tuple[Any, str]:
        holder, key = ga
        if holder is not None and key in holder.data:
            return holder.data[key], f"{holder.where}.{key}"
        return o.data.get(beta), f"{o.where}.{beta}"

    in_fmt, in_where = pick((inp, "format"), "input_audio_format")
    out_fmt, out_where = pick((out, "format"), "output_audio_format")
    td, td_where = pick((inp, "turn_detection"), "turn_detection")
    tr, tr_where = pick((inp, "transcription"), "input_audio_transcription")
    voice, voice_where = pick((out, "voice"), "voice")
    turn: TurnDetection | None = None
    if td is not None:
        turn = _turn_detection(td, td_where)
    elif (inp is not None and "turn_detection" in inp.data) or "turn_detection" in o.data:
        turn = TurnDetection(type="none")
    modalities = o.seq("output_modalities", _str_or_list_str) or o.seq(
        "modalities", _str_or_list_str
    )
    return SessionConfig(
        instructions=o.opt_str("instructions"),
        voice=None if voice is None else _str_or_list_str(voice, voice_where),
        input_format=None if in_fmt is None else _format(in_fmt, in_where),
        output_format=None if out_fmt is None else _format(out_fmt, out_where),
        turn_detection=turn,
        transcription_model=None if tr is None else _Obj(tr, tr_where).opt_str("model") or "",
        tools=o.seq("tools", _tool),
        tool_choice=o.opt_str("tool_choice"),
        output_modalities=modalities,
        model=o.opt_str("model"),
        id=o.opt_str("id"),
    )


def _content(value: Any, where: str) -> ContentPart:
    o = _Obj(value, where)
    kind = o.opt_str("type") or "input_text"
    return ContentPart(
        type=_BETA_CONTENT.get(kind, kind),
        text=o.opt_str("text"),
        transcript=o.opt_str("transcript"),
        audio=o.opt_b64("audio"),
    )


def _item(value: Any, where: str) -> Item:
    o = _Obj(value, where)
    kind = o.req_str("type")
    if kind == "message":
        role = o.req_str("role")
        if role not in ("user", "assistant", "system"):
            raise RealtimeEventError("bad_field", f"{where}.role must be user, assistant, system")
        return MessageItem(
            role=role,  # type: ignore[arg-type]  # checked above
            content=o.seq("content", _content) or (),
            id=o.opt_str("id"),
            status=o.opt_str("status"),
        )
    if kind == "function_call":
        return FunctionCallItem(
            call_id=o.opt_str("call_id") or "",
            name=o.req_str("name"),
            arguments=o.opt_str("arguments") or "",
            id=o.opt_str("id"),
            status=o.opt_str("status"),
        )
    if kind == "function_call_output":
        return FunctionCallOutputItem(
            call_id=o.req_str("call_id"), output=o.req_str("output"), id=o.opt_str("id")
        )
    raise RealtimeEventError("bad_field", f"{where}.type {kind[:40]!r} is not a supported item")


def _storable_item(item: Item) -> bool:
    if isinstance(item, MessageItem):
        texts = [t for p in item.content for t in (p.type, p.text, p.transcript) if t]
        texts += [t for t in (item.id, item.status) if t]
    elif isinstance(item, FunctionCallItem):
        texts = [item.call_id, item.name, item.arguments, item.id or "", item.status or ""]
    else:
        texts = [item.call_id, item.output, item.id or ""]
    return all(storable(t) for t in texts)


def _response(o: _Obj) -> ResponseInfo:
    details = o.opt_obj("status_details")
    return ResponseInfo(
        id=o.opt_str("id") or "",
        status=o.opt_str("status") or "in_progress",
        status_reason=details.opt_str("reason") if details else None,
        output=o.seq("output", _item) or (),
        metadata=o.str_map("metadata"),
    )


def _items_event(cls: Callable[..., _T], o: _Obj) -> _T:
    return cls(
        item=_item(o.data.get("item"), f"{o.where}.item"),
        previous_item_id=o.opt_str("previous_item_id"),
        event_id=o.opt_str("event_id") or "",
    )


# -- parsing -----------------------------------------------------------------------------


def parse_client_event(text: str | bytes) -> ClientEvent:
    """Parse one event a client sends (GA or beta names).

    A client event is at most :data:`MAX_CLIENT_EVENT_CHARS` long, and the
    text of an item it creates (which the runtime logs) holds no character
    PostgreSQL cannot store (U+0000, a lone surrogate).

    Raises:
        RealtimeEventError: invalid JSON, not an object, no ``type``, too
            large, or a modelled event with a missing or mistyped field or bad
            base64.
    """
    if len(text) > MAX_CLIENT_EVENT_CHARS:
        raise RealtimeEventError("too_large", f"an event of {len(text)} characters")
    append = audio_wire.read_append(text)  # the event of every chunk: read by its schema
    if append is not None:
        return InputAudioBufferAppend(audio=append.audio, event_id=append.event_id)
    type_, o = _load(text)
    eid = o.opt_str("event_id") or ""
    if type_ == "input_audio_buffer.append":
        return InputAudioBufferAppend(audio=o.b64("audio"), event_id=eid)
    if type_ == "session.update":
        return SessionUpdate(session=_session(o.obj("session")), event_id=eid)
    if type_ == "conversation.item.create":
        item = _item(o.data.get("item"), f"{type_}.item")
        if not _storable_item(item):
            raise RealtimeEventError(
                "bad_field", f"{type_}.item holds U+0000 or a lone surrogate in a string"
            )
        return ConversationItemCreate(
            item=item, previous_item_id=o.opt_str("previous_item_id"), event_id=eid
        )
    if type_ == "conversation.item.truncate":
        return ConversationItemTruncate(
            item_id=o.req_str("item_id"),
            content_index=o.req_int("content_index", 0),
            audio_end_ms=o.req_int("audio_end_ms"),
            event_id=eid,
        )
    if type_ == "response.create":
        r = o.opt_obj("response")
        params = None
        if r is not None:
            params = ResponseParams(
                instructions=r.opt_str("instructions"),
                output_modalities=r.seq("output_modalities", _str_or_list_str)
                or r.seq("modalities", _str_or_list_str),
                conversation=r.opt_str("conversation"),
                metadata=r.str_map("metadata"),
            )
        return ResponseCreate(response=params, event_id=eid)
    if type_ == "response.cancel":
        return ResponseCancel(response_id=o.opt_str("response_id"), event_id=eid)
    if type_ == "input_audio_buffer.commit":
        return InputAudioBufferCommit(event_id=eid)
    if type_ == "input_audio_buffer.clear":
        return InputAudioBufferClear(event_id=eid)
    return UnknownEvent(type_, o.data)


def parse_server_event(text: str | bytes) -> ServerEvent:
    """Parse one event the server sends (GA names, or their beta equivalents).

    Raises:
        RealtimeEventError: as :func:`parse_client_event`.
    """
    delta = audio_wire.read_delta(text)  # the event of every chunk: read by its schema
    if delta is not None:
        return ResponseOutputAudioDelta(
            response_id=delta.response_id,
            item_id=delta.item_id,
            delta=delta.delta,
            output_index=delta.output_index,
            content_index=delta.content_index,
            event_id=delta.event_id,
        )
    type_, o = _load(text)
    type_ = _BETA_SERVER_NAMES.get(type_, type_)
    eid = o.opt_str("event_id") or ""
    if type_ == "response.output_audio.delta":
        return ResponseOutputAudioDelta(
            response_id=o.req_str("response_id"),
            item_id=o.req_str("item_id"),
            delta=o.b64("delta"),
            output_index=o.req_int("output_index", 0),
            content_index=o.req_int("content_index", 0),
            event_id=eid,
        )
    if type_ in ("response.output_audio_transcript.delta", "response.output_audio_transcript.done"):
        common: dict[str, Any] = {
            "response_id": o.req_str("response_id"),
            "item_id": o.req_str("item_id"),
            "output_index": o.req_int("output_index", 0),
            "content_index": o.req_int("content_index", 0),
            "event_id": eid,
        }
        if type_.endswith("delta"):
            return ResponseOutputAudioTranscriptDelta(delta=o.req_str("delta"), **common)
        return ResponseOutputAudioTranscriptDone(transcript=o.req_str("transcript"), **common)
    if type_ == "response.output_audio.done":
        return ResponseOutputAudioDone(
            response_id=o.req_str("response_id"),
            item_id=o.req_str("item_id"),
            output_index=o.req_int("output_index", 0),
            content_index=o.req_int("content_index", 0),
            event_id=eid,
        )
    if type_ == "input_audio_buffer.speech_started":
        return InputAudioBufferSpeechStarted(
            audio_start_ms=o.req_int("audio_start_ms"), item_id=o.req_str("item_id"), event_id=eid
        )
    if type_ == "input_audio_buffer.speech_stopped":
        return InputAudioBufferSpeechStopped(
            audio_end_ms=o.req_int("audio_end_ms"), item_id=o.req_str("item_id"), event_id=eid
        )
    if type_ == "input_audio_buffer.committed":
        return InputAudioBufferCommitted(
            item_id=o.req_str("item_id"),
            previous_item_id=o.opt_str("previous_item_id"),
            event_id=eid,
        )
    if type_ == "input_audio_buffer.cleared":
        return InputAudioBufferCleared(event_id=eid)
    if type_ == "conversation.item.input_audio_transcription.completed":
        usage = o.opt_obj("usage")
        return InputAudioTranscriptionCompleted(
            item_id=o.req_str("item_id"),
            content_index=o.req_int("content_index", 0),
            transcript=o.req_str("transcript"),
            usage_seconds=(usage.opt_float("seconds") or 0.0) if usage else 0.0,
            event_id=eid,
        )
    if type_ in ("response.created", "response.done"):
        cls = ResponseCreated if type_ == "response.created" else ResponseDone
        return cls(response=_response(o.obj("response")), event_id=eid)
    if type_ in ("response.output_item.added", "response.output_item.done"):
        cls2 = ResponseOutputItemAdded if type_.endswith("added") else ResponseOutputItemDone
        return cls2(
            response_id=o.req_str("response_id"),
            output_index=o.req_int("output_index", 0),
            item=_item(o.data.get("item"), f"{type_}.item"),
            event_id=eid,
        )
    if type_ == "response.function_call_arguments.delta":
        return ResponseFunctionCallArgumentsDelta(
            response_id=o.req_str("response_id"),
            item_id=o.req_str("item_id"),
            call_id=o.req_str("call_id"),
            delta=o.req_str("delta"),
            output_index=o.req_int("output_index", 0),
            event_id=eid,
        )
    if type_ == "response.function_call_arguments.done":
        return ResponseFunctionCallArgumentsDone(
            response_id=o.req_str("response_id"),
            item_id=o.req_str("item_id"),
            call_id=o.req_str("call_id"),
            name=o.opt_str("name") or "",  # the beta event has no name
            arguments=o.req_str("arguments"),
            output_index=o.req_int("output_index", 0),
            event_id=eid,
        )
    if type_ == "error":
        err = o.obj("error")
        return ErrorEvent(
            error_type=err.req_str("type"),
            message=err.req_str("message"),
            code=err.opt_str("code"),
            param=err.opt_str("param"),
            client_event_id=err.opt_str("event_id"),
            event_id=eid,
        )
    if type_ in ("session.created", "session.updated"):
        cls3 = SessionCreated if type_ == "session.created" else SessionUpdated
        return cls3(session=_session(o.obj("session")), event_id=eid)
    if type_ == "conversation.item.created":
        return _items_event(ConversationItemCreated, o)
    if type_ == "conversation.item.added":
        return _items_event(ConversationItemAdded, o)
    if type_ == "conversation.item.done":
        return _items_event(ConversationItemDone, o)
    if type_ == "conversation.item.truncated":
        return ConversationItemTruncated(
            item_id=o.req_str("item_id"),
            content_index=o.req_int("content_index", 0),
            audio_end_ms=o.req_int("audio_end_ms"),
            event_id=eid,
        )
    return UnknownEvent(o.req_str("type"), o.data)


# -- encoding ----------------------------------------------------------------------------


def _format_json(fmt: WireAudioFormat, dialect: Dialect) -> Any:
    if dialect == "beta":
        return next(k for k, v in _BETA_FORMATS.items() if v == fmt)
    if fmt.encoding == "pcm16":
        return {"type": "audio/pcm", "rate": fmt.sample_rate}
    return {"type": "audio/pcmu" if fmt.encoding == "pcmu" else "audio/pcma"}


def _format_or_none(fmt: WireAudioFormat | None, dialect: Dialect) -> Any:
    return None if fmt is None else _format_json(fmt, dialect)


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _turn_detection_json(td: TurnDetection) -> dict[str, Any] | None:
    if td.type == "none":
        return None
    return _drop_none(
        {
            "type": td.type,
            "silence_duration_ms": td.silence_duration_ms,
            "prefix_padding_ms": td.prefix_padding_ms,
            "threshold": td.threshold,
            "eagerness": td.eagerness,
            "create_response": td.create_response,
            "interrupt_response": td.interrupt_response,
        }
    )


def _session_json(s: SessionConfig, dialect: Dialect) -> dict[str, Any]:
    tools = (
        None
        if s.tools is None
        else [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            }
            for t in s.tools
        ]
    )
    common = {
        "id": s.id,
        "model": s.model,
        "instructions": s.instructions,
        "tools": tools,
        "tool_choice": s.tool_choice,
    }
    transcription = None if s.transcription_model is None else {"model": s.transcription_model}
    modalities = None if s.output_modalities is None else list(s.output_modalities)
    if dialect == "beta":
        out = {
            **common,
            "voice": s.voice,
            "modalities": modalities,
            "input_audio_format": _format_or_none(s.input_format, dialect),
            "output_audio_format": _format_or_none(s.output_format, dialect),
            "input_audio_transcription": transcription,
        }
        result = _drop_none(out)
        if s.turn_detection is not None:
            result["turn_detection"] = _turn_detection_json(s.turn_detection)
        return result
    inp = _drop_none(
        {
            "format": _format_or_none(s.input_format, dialect),
            "transcription": transcription,
        }
    )
    if s.turn_detection is not None:
        inp["turn_detection"] = _turn_detection_json(s.turn_detection)
    output = _drop_none({"format": _format_or_none(s.output_format, dialect), "voice": s.voice})
    audio = _drop_none({"input": inp or None, "output": output or None})
    return {
        "type": "realtime",
        **_drop_none({**common, "output_modalities": modalities, "audio": audio or None}),
    }


def _content_json(part: ContentPart, dialect: Dialect) -> dict[str, Any]:
    kind = _GA_TO_BETA_CONTENT.get(part.type, part.type) if dialect == "beta" else part.type
    return _drop_none(
        {
            "type": kind,
            "text": part.text,
            "transcript": part.transcript,
            "audio": None if part.audio is None else _b64(part.audio),
        }
    )


def _item_json(item: Item, dialect: Dialect) -> dict[str, Any]:
    if isinstance(item, MessageItem):
        return _drop_none(
            {
                "id": item.id,
                "object": "realtime.item" if item.id else None,
                "type": "message",
                "role": item.role,
                "status": item.status,
                "content": [_content_json(p, dialect) for p in item.content],
            }
        )
    if isinstance(item, FunctionCallItem):
        return _drop_none(
            {
                "id": item.id,
                "object": "realtime.item" if item.id else None,
                "type": "function_call",
                "status": item.status,
                "call_id": item.call_id,
                "name": item.name,
                "arguments": item.arguments,
            }
        )
    return _drop_none(
        {
            "id": item.id,
            "object": "realtime.item" if item.id else None,
            "type": "function_call_output",
            "call_id": item.call_id,
            "output": item.output,
        }
    )


def _response_json(r: ResponseInfo, dialect: Dialect) -> dict[str, Any]:
    details = None
    if r.status not in ("in_progress", "completed"):
        details = _drop_none({"type": r.status, "reason": r.status_reason})
    return _drop_none(
        {
            "id": r.id,
            "object": "realtime.response",
            "status": r.status,
            "status_details": details,
            "output": [_item_json(i, dialect) for i in r.output],
            "metadata": None if r.metadata is None else dict(r.metadata),
        }
    )


def encode_client_event(event: ClientEvent, dialect: Dialect = "ga") -> str:
    """Encode a client event as its JSON text (``event_id`` only when set)."""
    data: dict[str, Any]
    if isinstance(event, InputAudioBufferAppend):
        return audio_wire.write_append(event.audio, event.event_id)
    if isinstance(event, SessionUpdate):
        data = {"type": "session.update", "session": _session_json(event.session, dialect)}
    elif isinstance(event, ConversationItemCreate):
        data = _drop_none(
            {
                "type": "conversation.item.create",
                "previous_item_id": event.previous_item_id,
                "item": _item_json(event.item, dialect),
            }
        )
    elif isinstance(event, ConversationItemTruncate):
        data = {
            "type": "conversation.item.truncate",
            "item_id": event.item_id,
            "content_index": event.content_index,
            "audio_end_ms": event.audio_end_ms,
        }
    elif isinstance(event, ResponseCreate):
        data = {"type": "response.create"}
        r = event.response
        if r is not None:
            modalities = None if r.output_modalities is None else list(r.output_modalities)
            data["response"] = _drop_none(
                {
                    "instructions": r.instructions,
                    "conversation": r.conversation,
                    "metadata": None if r.metadata is None else dict(r.metadata),
                    ("modalities" if dialect == "beta" else "output_modalities"): modalities,
                }
            )
    elif isinstance(event, ResponseCancel):
        data = _drop_none({"type": "response.cancel", "response_id": event.response_id})
    elif isinstance(event, InputAudioBufferCommit):
        data = {"type": "input_audio_buffer.commit"}
    elif isinstance(event, InputAudioBufferClear):
        data = {"type": "input_audio_buffer.clear"}
    else:
        return json.dumps(dict(event.data))
    if event.event_id:
        data["event_id"] = event.event_id
    return json.dumps(data)


def _server_json(event: ServerEvent, dialect: Dialect) -> dict[str, Any]:
    if isinstance(event, ResponseOutputAudioTranscriptDelta | ResponseOutputAudioTranscriptDone):
        delta = isinstance(event, ResponseOutputAudioTranscriptDelta)
        return {
            "type": f"response.output_audio_transcript.{'delta' if delta else 'done'}",
            "response_id": event.response_id,
            "item_id": event.item_id,
            "output_index": event.output_index,
            "content_index": event.content_index,
            ("delta" if delta else "transcript"): (
                event.delta
                if isinstance(event, ResponseOutputAudioTranscriptDelta)
                else event.transcript
            ),
        }
    if isinstance(event, ResponseOutputAudioDone):
        return {
            "type": "response.output_audio.done",
            "response_id": event.response_id,
            "item_id": event.item_id,
            "output_index": event.output_index,
            "content_index": event.content_index,
        }
    if isinstance(event, InputAudioBufferSpeechStarted):
        return {
            "type": "input_audio_buffer.speech_started",
            "audio_start_ms": event.audio_start_ms,
            "item_id": event.item_id,
        }
    if isinstance(event, InputAudioBufferSpeechStopped):
        return {
            "type": "input_audio_buffer.speech_stopped",
            "audio_end_ms": event.audio_end_ms,
            "item_id": event.item_id,
        }
    if isinstance(event, InputAudioBufferCommitted):
        return _drop_none(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": event.previous_item_id,
                "item_id": event.item_id,
            }
        )
    if isinstance(event, InputAudioBufferCleared):
        return {"type": "input_audio_buffer.cleared"}
    if isinstance(event, InputAudioTranscriptionCompleted):
        return {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": event.item_id,
            "content_index": event.content_index,
            "transcript": event.transcript,
            "usage": {"type": "duration", "seconds": event.usage_seconds},
        }
    if isinstance(event, ResponseCreated | ResponseDone):
        name = "response.created" if isinstance(event, ResponseCreated) else "response.done"
        return {"type": name, "response": _response_json(event.response, dialect)}
    if isinstance(event, ResponseOutputItemAdded | ResponseOutputItemDone):
        added = isinstance(event, ResponseOutputItemAdded)
        return {
            "type": f"response.output_item.{'added' if added else 'done'}",
            "response_id": event.response_id,
            "output_index": event.output_index,
            "item": _item_json(event.item, dialect),
        }
    if isinstance(event, ResponseFunctionCallArgumentsDelta):
        return {
            "type": "response.function_call_arguments.delta",
            "response_id": event.response_id,
            "item_id": event.item_id,
            "output_index": event.output_index,
            "call_id": event.call_id,
            "delta": event.delta,
        }
    if isinstance(event, ResponseFunctionCallArgumentsDone):
        data = {
            "type": "response.function_call_arguments.done",
            "response_id": event.response_id,
            "item_id": event.item_id,
            "output_index": event.output_index,
            "call_id": event.call_id,
            "arguments": event.arguments,
        }
        if dialect == "ga":
            data["name"] = event.name
        return data
    if isinstance(event, ErrorEvent):
        return {
            "type": "error",
            "error": _drop_none(
                {
                    "type": event.error_type,
                    "code": event.code,
                    "message": event.message,
                    "param": event.param,
                    "event_id": event.client_event_id,
                }
            ),
        }
    if isinstance(event, SessionCreated | SessionUpdated):
        name = "session.created" if isinstance(event, SessionCreated) else "session.updated"
        return {"type": name, "session": _session_json(event.session, dialect)}
    if isinstance(event, ConversationItemCreated | ConversationItemAdded | ConversationItemDone):
        suffix = {
            ConversationItemCreated: "created",
            ConversationItemAdded: "added",
            ConversationItemDone: "done",
        }[type(event)]
        return _drop_none(
            {
                "type": f"conversation.item.{suffix}",
                "previous_item_id": event.previous_item_id,
                "item": _item_json(event.item, dialect),
            }
        )
    if isinstance(event, ConversationItemTruncated):
        return {
            "type": "conversation.item.truncated",
            "item_id": event.item_id,
            "content_index": event.content_index,
            "audio_end_ms": event.audio_end_ms,
        }
    assert isinstance(event, UnknownEvent)  # audio deltas are written by their schema
    return dict(event.data)


def encode_server_event(event: ServerEvent, dialect: Dialect = "ga") -> str:
    """Encode a server event as its JSON text, with beta names when ``dialect="beta"``.

    ``event_id`` is always written (the wire requires it), ``""`` when unset.
    """
    if isinstance(event, ResponseOutputAudioDelta):
        return audio_wire.write_delta(
            event.response_id,
            event.item_id,
            event.delta,
            event.output_index,
            event.content_index,
            event.event_id,
            beta=dialect == "beta",
        )
    data = _server_json(event, dialect)
    if not isinstance(event, UnknownEvent):
        data["event_id"] = event.event_id
        if dialect == "beta":
            data["type"] = _GA_TO_BETA_SERVER_NAMES.get(data["type"], data["type"])
    return json.dumps(data)
