"""Gemini Live API (``BidiGenerateContent``): the JSON messages of one WebSocket session.

Source: Google, "Live API - WebSockets API reference"
(https://ai.google.dev/api/live), checked against the ``google-genai`` SDK's
``types.LiveClientMessage`` / ``types.LiveServerMessage`` (camelCase field
names, as ``google.genai._live_converters`` sends them to the Gemini API).

Client -> server (exactly one field per message):

- ``setup``: model, ``generationConfig`` (``responseModalities``,
  ``speechConfig.voiceConfig.prebuiltVoiceConfig.voiceName``,
  ``speechConfig.languageCode``), ``systemInstruction``, ``tools``
  (``functionDeclarations``), ``inputAudioTranscription``,
  ``outputAudioTranscription``, ``sessionResumption`` (``handle``).
- ``realtimeInput``: ``audio`` ``{"data": base64, "mimeType":
  "audio/pcm;rate=16000"}`` (little-endian PCM16), or ``audioStreamEnd``.
- ``clientContent``: ``turns`` (``{"role": "user"|"model", "parts": [{"text"}]}``)
  and ``turnComplete``.
- ``toolResponse``: ``functionResponses`` (``id``, ``name``, ``response``).

Server -> client (one JSON object may carry several of these fields; the
real server sends it in a BINARY frame): ``setupComplete``, ``serverContent``
(``modelTurn.parts[].inlineData`` audio as PCM16 at 24 kHz,
``turnComplete``, ``generationComplete``, ``interrupted``,
``inputTranscription.text``, ``outputTranscription.text``), ``toolCall``
(``functionCalls``: ``id``, ``name``, ``args``), ``toolCallCancellation``
(``ids``), ``goAway`` (``timeLeft``, a protobuf Duration such as ``"9.5s"``),
``sessionResumptionUpdate`` (``newHandle``, ``resumable``),
``usageMetadata``.

Pure code: bytes and text in, dataclasses out, and back. Unknown fields are
ignored; anything malformed raises :class:`GeminiLiveError` (a ``ValueError``)
whose ``reason`` says what was wrong.
"""

from __future__ import annotations

import binascii
import json
import re
from base64 import b64decode, b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

INPUT_SAMPLE_RATE: Final = 16000
"""Sample rate (Hz) of the PCM16 audio the Live API takes."""
OUTPUT_SAMPLE_RATE: Final = 24000
"""Sample rate (Hz) of the PCM16 audio the Live API speaks."""


class GeminiLiveError(ValueError):
    """A Live API message that cannot be understood.

    Attributes:
        reason: ``invalid_json``, ``not_an_object``, ``unknown_message``,
            ``bad_field`` or ``bad_base64``.
        detail: what exactly, for a person.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# -- client -> server ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionDeclaration:
    """A tool the model may call; ``parameters`` is a JSON Schema object.

    Sent as ``parametersJsonSchema`` (plain JSON Schema, what agent files
    hold) rather than ``parameters`` (the OpenAPI subset with upper-case types).
    """

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Setup:
    """The session's configuration: the first message, and only once.

    ``resume_handle`` resumes an earlier session (from its last
    :class:`SessionResumptionUpdate`); ``session_resumption`` asks for such
    handles at all.
    """

    model: str
    system_instruction: str = ""
    voice: str | None = None
    language: str | None = None
    tools: tuple[FunctionDeclaration, ...] = ()
    input_transcription: bool = True
    output_transcription: bool = True
    session_resumption: bool = True
    resume_handle: str | None = None
    response_modalities: tuple[str, ...] = ("AUDIO",)


@dataclass(frozen=True, slots=True)
class RealtimeAudio:
    """Streamed caller audio: little-endian PCM16 at ``sample_rate`` Hz."""

    data: bytes
    sample_rate: int = INPUT_SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class AudioStreamEnd:
    """The audio stream paused (for more than a second): the server flushes its VAD."""


@dataclass(frozen=True, slots=True)
class ContentTurn:
    """One turn of conversation given as text (``role``: ``user`` or ``model``)."""

    role: Literal["user", "model"]
    text: str


@dataclass(frozen=True, slots=True)
class ClientContent:
    """Turns appended to the conversation; ``turn_complete`` asks the model to answer."""

    turns: tuple[ContentTurn, ...]
    turn_complete: bool = False


@dataclass(frozen=True, slots=True)
class FunctionResponse:
    """The result of the function call ``id``; ``response`` is a JSON object."""

    id: str
    name: str
    response: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResponse:
    responses: tuple[FunctionResponse, ...]


ClientMessage = Setup | RealtimeAudio | AudioStreamEnd | ClientContent | ToolResponse


# -- server -> client ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetupComplete:
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class InlineAudio:
    """One ``inlineData`` part: PCM16 audio at ``sample_rate`` Hz."""

    data: bytes
    sample_rate: int = OUTPUT_SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class ServerContent:
    """Part of the model's turn, or a change of its state.

    Attributes:
        parts: ``modelTurn.parts`` in order: :class:`InlineAudio` or text (``str``).
        turn_complete: the model's turn ended (it waits for the caller).
        generation_complete: the model has generated everything (audio may
            still be arriving).
        interrupted: the caller spoke over the model (the server's VAD);
            the rest of this turn is dropped.
        input_transcription: a piece of the caller's transcript.
        output_transcription: a piece of the model's transcript.
    """

    parts: tuple[InlineAudio | str, ...] = ()
    turn_complete: bool = False
    generation_complete: bool = False
    interrupted: bool = False
    input_transcription: str | None = None
    output_transcription: str | None = None

    @property
    def audio(self) -> bytes:
        """All audio of :attr:`parts`, concatenated."""
        return b"".join(p.data for p in self.parts if isinstance(p, InlineAudio))


@dataclass(frozen=True, slots=True)
class FunctionCall:
    id: str
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolCall:
    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True, slots=True)
class ToolCallCancellation:
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GoAway:
    """The server will close this connection in ``time_left_ms``; resume elsewhere."""

    time_left_ms: float | None = None


@dataclass(frozen=True, slots=True)
class SessionResumptionUpdate:
    """``new_handle`` resumes the session at this point (when ``resumable``)."""

    new_handle: str | None = None
    resumable: bool = False


@dataclass(frozen=True, slots=True)
class UsageMetadata:
    prompt_token_count: int | None = None
    response_token_count: int | None = None
    total_token_count: int | None = None


ServerMessage = (
    SetupComplete
    | ServerContent
    | ToolCall
    | ToolCallCancellation
    | GoAway
    | SessionResumptionUpdate
    | UsageMetadata
)

_SERVER_KEYS: Final = (
    "setupComplete",
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "goAway",
    "sessionResumptionUpdate",
    "usageMetadata",
)
_DURATION: Final = re.compile(r"(-?[0-9]+(?:\.[0-9]+)?)s")
_RATE: Final = re.compile(r"audio/pcm(?:;\s*rate=([0-9]+))?")


# -- encoding ------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def encode_client(message: ClientMessage) -> str:
    """``message`` as the JSON text a client sends (send it as a text or binary frame)."""
    return json.dumps(client_json(message), separators=(",", ":"))


def client_json(message: ClientMessage) -> dict[str, Any]:
    """``message`` as JSON data (``{"setup": ...}``, ``{"realtimeInput": ...}``, ...)."""
    if isinstance(message, Setup):
        return {"setup": _setup_json(message)}
    if isinstance(message, RealtimeAudio):
        mime = f"audio/pcm;rate={message.sample_rate}"
        return {"realtimeInput": {"audio": {"data": _b64(message.data), "mimeType": mime}}}
    if isinstance(message, AudioStreamEnd):
        return {"realtimeInput": {"audioStreamEnd": True}}
    if isinstance(message, ClientContent):
        turns = [{"role": t.role, "parts": [{"text": t.text}]} for t in message.turns]
        return {"clientContent": {"turns": turns, "turnComplete": message.turn_complete}}
    responses = [
        {"id": r.id, "name": r.name, "response": dict(r.response)} for r in message.responses
    ]
    return {"toolResponse": {"functionResponses": responses}}


def _setup_json(setup: Setup) -> dict[str, Any]:
    generation: dict[str, Any] = {"responseModalities": list(setup.response_modalities)}
    speech: dict[str, Any] = {}
    if setup.voice:
        speech["voiceConfig"] = {"prebuiltVoiceConfig": {"voiceName": setup.voice}}
    if setup.language:
        speech["languageCode"] = setup.language
    if speech:
        generation["speechConfig"] = speech
    out: dict[str, Any] = {"model": setup.model, "generationConfig": generation}
    if setup.system_instruction:
        out["systemInstruction"] = {"parts": [{"text": setup.system_instruction}]}
    if setup.tools:
        out["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": t.name,
                        "description": t.description,
                        "parametersJsonSchema": dict(t.parameters),
                    }
                    for t in setup.tools
                ]
            }
        ]
    if setup.input_transcription:
        out["inputAudioTranscription"] = {}
    if setup.output_transcription:
        out["outputAudioTranscription"] = {}
    if setup.session_resumption or setup.resume_handle:
        out["sessionResumption"] = {"handle": setup.resume_handle} if setup.resume_handle else {}
    return out


def encode_server(*messages: ServerMessage) -> bytes:
    """``messages`` as one server JSON object, UTF-8 (the real server's binary frame).

    Raises:
        ValueError: no message, or two of the same kind (one field each).
    """
    if not messages:
        raise ValueError("encode_server needs at least one message")
    out: dict[str, Any] = {}
    for message in messages:
        key, value = _server_field(message)
        if key in out:
            raise ValueError(f"two {key} in one server message")
        out[key] = value
    return json.dumps(out, separators=(",", ":")).encode()


def _server_field(message: ServerMessage) -> tuple[str, Any]:
    if isinstance(message, SetupComplete):
        return "setupComplete", ({"sessionId": message.session_id} if message.session_id else {})
    if isinstance(message, ServerContent):
        content: dict[str, Any] = {}
        if message.parts:
            content["modelTurn"] = {
                "role": "model",
                "parts": [
                    {"text": p}
                    if isinstance(p, str)
                    else {
                        "inlineData": {
                            "mimeType": f"audio/pcm;rate={p.sample_rate}",
                            "data": _b64(p.data),
                        }
                    }
                    for p in message.parts
                ],
            }
        for key, flag in (
            ("generationComplete", message.generation_complete),
            ("turnComplete", message.turn_complete),
            ("interrupted", message.interrupted),
        ):
            if flag:
                content[key] = True
        if message.input_transcription is not None:
            content["inputTranscription"] = {"text": message.input_transcription}
        if message.output_transcription is not None:
            content["outputTranscription"] = {"text": message.output_transcription}
        return "serverContent", content
    if isinstance(message, ToolCall):
        calls = [{"id": c.id, "name": c.name, "args": dict(c.args)} for c in message.calls]
        return "toolCall", {"functionCalls": calls}
    if isinstance(message, ToolCallCancellation):
        return "toolCallCancellation", {"ids": list(message.ids)}
    if isinstance(message, GoAway):
        left = {} if message.time_left_ms is None else {"timeLeft": _duration(message.time_left_ms)}
        return "goAway", left
    if isinstance(message, SessionResumptionUpdate):
        update: dict[str, Any] = {"resumable": message.resumable}
        if message.new_handle is not None:
            update["newHandle"] = message.new_handle
        return "sessionResumptionUpdate", update
    usage = {
        k: v
        for k, v in (
            ("promptTokenCount", message.prompt_token_count),
            ("responseTokenCount", message.response_token_count),
            ("totalTokenCount", message.total_token_count),
        )
        if v is not None
    }
    return "usageMetadata", usage


def _duration(ms: float) -> str:
    return f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"


# -- parsing -------------------------------------------------------------------


def _load(raw: str | bytes) -> Mapping[str, Any]:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GeminiLiveError("invalid_json", str(exc)) from None
    if not isinstance(message, dict):
        raise GeminiLiveError(
            "not_an_object", f"expected a JSON object, got {type(message).__name__}"
        )
    return message


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise GeminiLiveError("bad_field", f"{where} must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise GeminiLiveError("bad_field", f"{where} must be a list")
    return value


def _str(value: Any, where: str, *, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise GeminiLiveError("bad_field", f"{where} must be a string")
    return value


def _bool(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise GeminiLiveError("bad_field", f"{where} must be true or false")
    return value


def _int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise GeminiLiveError("bad_field", f"{where} must be an integer")
    return value


def _audio(blob: Any, where: str) -> tuple[bytes, int]:
    blob = _obj(blob, where)
    mime = _str(blob.get("mimeType"), f"{where}.mimeType")
    match = _RATE.fullmatch(mime.strip())
    if match is None:
        raise GeminiLiveError("bad_field", f"{where}.mimeType must be audio/pcm, got {mime!r}")
    rate = int(match.group(1) or INPUT_SAMPLE_RATE)
    if rate <= 0:
        raise GeminiLiveError("bad_field", f"{where}.mimeType has rate 0")
    try:
        data = b64decode(_str(blob.get("data"), f"{where}.data"), validate=True)
    except binascii.Error as exc:
        raise GeminiLiveError("bad_base64", f"{where}.data: {exc}") from None
    if len(data) % 2:
        raise GeminiLiveError("bad_field", f"{where}.data: PCM16 needs an even number of bytes")
    return data, rate


def _text_parts(content: Any, where: str) -> str:
    parts = _list(_obj(content, where).get("parts"), f"{where}.parts")
    return "".join(
        _str(_obj(p, f"{where}.parts[]").get("text"), f"{where}.parts[].text", optional=True)
        for p in parts
    )


def parse_client(raw: str | bytes) -> ClientMessage:
    """One client message (what a fake server receives).

    Raises:
        GeminiLiveError: not JSON, not an object, no known field, a bad field.
    """
    message = _load(raw)
    if "setup" in message:
        return _parse_setup(_obj(message["setup"], "setup"))
    if "realtimeInput" in message:
        rt = _obj(message["realtimeInput"], "realtimeInput")
        if "audio" in rt:
            data, rate = _audio(rt["audio"], "realtimeInput.audio")
            return RealtimeAudio(data, rate)
        if _bool(rt.get("audioStreamEnd"), "realtimeInput.audioStreamEnd"):
            return AudioStreamEnd()
        raise GeminiLiveError("unknown_message", "realtimeInput without audio")
    if "clientContent" in message:
        cc = _obj(message["clientContent"], "clientContent")
        turns = []
        for turn in _list(cc.get("turns"), "clientContent.turns"):
            role = _obj(turn, "clientContent.turns[]").get("role")
            if role not in ("user", "model"):
                raise GeminiLiveError("bad_field", f"turn role must be user or model: {role!r}")
            turns.append(ContentTurn(role, _text_parts(turn, "clientContent.turns[]")))
        return ClientContent(tuple(turns), _bool(cc.get("turnComplete"), "turnComplete"))
    if "toolResponse" in message:
        tr = _obj(message["toolResponse"], "toolResponse")
        responses = []
        for r in _list(tr.get("functionResponses"), "toolResponse.functionResponses"):
            r = _obj(r, "functionResponses[]")
            responses.append(
                FunctionResponse(
                    _str(r.get("id"), "functionResponses[].id"),
                    _str(r.get("name"), "functionResponses[].name", optional=True),
                    _obj(r.get("response", {}), "functionResponses[].response"),
                )
            )
        return ToolResponse(tuple(responses))
    raise GeminiLiveError("unknown_message", f"no known client field in {sorted(message)[:5]}")


def _parse_setup(setup: Mapping[str, Any]) -> Setup:
    generation = _obj(setup.get("generationConfig", {}), "setup.generationConfig")
    speech = _obj(generation.get("speechConfig", {}), "generationConfig.speechConfig")
    voice = _obj(speech.get("voiceConfig", {}), "speechConfig.voiceConfig")
    prebuilt = _obj(voice.get("prebuiltVoiceConfig", {}), "voiceConfig.prebuiltVoiceConfig")
    tools = []
    for tool in _list(setup.get("tools"), "setup.tools"):
        for fn in _list(_obj(tool, "tools[]").get("functionDeclarations"), "functionDeclarations"):
            fn = _obj(fn, "functionDeclarations[]")
            tools.append(
                FunctionDeclaration(
                    _str(fn.get("name"), "functionDeclarations[].name"),
                    _str(
                        fn.get("description"), "functionDeclarations[].description", optional=True
                    ),
                    _obj(
                        fn.get("parametersJsonSchema", fn.get("parameters", {})),
                        "functionDeclarations[].parametersJsonSchema",
                    ),
                )
            )
    resumption = setup.get("sessionResumption")
    handle = _obj(resumption, "setup.sessionResumption").get("handle") if resumption else None
    modalities = _list(generation.get("responseModalities"), "responseModalities")
    instruction = setup.get("systemInstruction")
    return Setup(
        model=_str(setup.get("model"), "setup.model"),
        system_instruction=(
            instruction
            if isinstance(instruction, str)
            else _text_parts(instruction, "setup.systemInstruction")
            if instruction is not None
            else ""
        ),
        voice=_str(prebuilt.get("voiceName"), "voiceName", optional=True) or None,
        language=_str(speech.get("languageCode"), "languageCode", optional=True) or None,
        tools=tuple(tools),
        input_transcription="inputAudioTranscription" in setup,
        output_transcription="outputAudioTranscription" in setup,
        session_resumption=resumption is not None,
        resume_handle=_str(handle, "sessionResumption.handle", optional=True) or None,
        response_modalities=tuple(_str(m, "responseModalities[]") for m in modalities),
    )


def parse_server(raw: str | bytes) -> tuple[ServerMessage, ...]:
    """The messages one server JSON object carries, in the order of ``_SERVER_KEYS``.

    Accepts a text or a binary frame's payload. An object with no known field
    (a newer message kind) gives ``()``.

    Raises:
        GeminiLiveError: not JSON, not an object, or a known field malformed.
    """
    message = _load(raw)
    out: list[ServerMessage] = []
    for key in _SERVER_KEYS:
        value = message.get(key)
        if value is None:
            continue
        body = _obj(value, key)
        if key == "setupComplete":
            session_id = _str(body.get("sessionId"), "setupComplete.sessionId", optional=True)
            out.append(SetupComplete(session_id or None))
        elif key == "serverContent":
            out.append(_parse_content(body))
        elif key == "toolCall":
            calls = []
            for call in _list(body.get("functionCalls"), "toolCall.functionCalls"):
                call = _obj(call, "functionCalls[]")
                calls.append(
                    FunctionCall(
                        _str(call.get("id"), "functionCalls[].id"),
                        _str(call.get("name"), "functionCalls[].name"),
                        _obj(call.get("args", {}), "functionCalls[].args"),
                    )
                )
            out.append(ToolCall(tuple(calls)))
        elif key == "toolCallCancellation":
            ids = _list(body.get("ids"), "toolCallCancellation.ids")
            out.append(ToolCallCancellation(tuple(_str(i, "ids[]") for i in ids)))
        elif key == "goAway":
            out.append(GoAway(_parse_duration(body.get("timeLeft"))))
        elif key == "sessionResumptionUpdate":
            handle = _str(body.get("newHandle"), "newHandle", optional=True)
            out.append(
                SessionResumptionUpdate(handle or None, _bool(body.get("resumable"), "resumable"))
            )
        else:
            out.append(
                UsageMetadata(
                    _int(body.get("promptTokenCount"), "promptTokenCount"),
                    _int(body.get("responseTokenCount"), "responseTokenCount"),
                    _int(body.get("totalTokenCount"), "totalTokenCount"),
                )
            )
    return tuple(out)


def _parse_content(body: Mapping[str, Any]) -> ServerContent:
    parts: list[InlineAudio | str] = []
    turn = body.get("modelTurn")
    if turn is not None:
        for part in _list(_obj(turn, "modelTurn").get("parts"), "modelTurn.parts"):
            part = _obj(part, "modelTurn.parts[]")
            if "inlineData" in part:
                data, rate = _audio(part["inlineData"], "modelTurn.parts[].inlineData")
                parts.append(InlineAudio(data, rate))
            elif "text" in part:
                parts.append(_str(part["text"], "modelTurn.parts[].text"))
    return ServerContent(
        parts=tuple(parts),
        turn_complete=_bool(body.get("turnComplete"), "turnComplete"),
        generation_complete=_bool(body.get("generationComplete"), "generationComplete"),
        interrupted=_bool(body.get("interrupted"), "interrupted"),
        input_transcription=_transcription(body.get("inputTranscription"), "inputTranscription"),
        output_transcription=_transcription(body.get("outputTranscription"), "outputTranscription"),
    )


def _transcription(value: Any, where: str) -> str | None:
    if value is None:
        return None
    return _str(_obj(value, where).get("text"), f"{where}.text", optional=True)


def _parse_duration(value: Any) -> float | None:
    if value is None:
        return None
    match = _DURATION.fullmatch(_str(value, "goAway.timeLeft"))
    if match is None:
        raise GeminiLiveError("bad_field", f"goAway.timeLeft must be like '10s', got {value!r}")
    return float(match.group(1)) * 1000.0
