"""Deepgram live speech-to-text (``wss://api.deepgram.com/v1/listen``): the wire format. Pure code.

Source: Deepgram's "Live Audio" API reference and its SDKs' response types
(``deepgram-python-sdk`` ``clients/listen/v1/websocket/response.py``, the JS
SDK's ``LiveTranscriptionEvent``). The client sends the audio as binary
frames in the encoding named in the URL's query, and JSON control messages
(``KeepAlive``, ``Finalize``, ``CloseStream``); the server sends JSON:

- ``Results``: ``channel.alternatives[0].transcript``, ``start`` and
  ``duration`` (seconds of audio), ``is_final`` (this stretch of audio will
  not be transcribed again) and ``speech_final`` (the endpointer heard the
  speaker pause: the utterance is over);
- ``UtteranceEnd``: ``last_word_end`` (seconds): no word for
  ``utterance_end_ms`` after it (needs ``interim_results=true``);
- ``SpeechStarted``: ``timestamp`` (seconds) where voice activity began
  (with ``vad_events=true``);
- ``Metadata``: ``request_id``, ``duration``, ``channels``: sent when the
  stream closes;
- ``Error`` (``description``, ``message``, ``variant``): a failure the
  server reports before it closes the socket (close code 1011 with a
  ``NET-``/``DATA-`` reason).

:func:`parse_server_message` turns one text frame into one of the typed
messages below or raises :class:`DeepgramMessageError`;
:func:`listen_url` builds the connection URL; the ``encode_*`` functions give
the client's control frames and (for fakes) the server's messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeGuard
from urllib.parse import urlencode

__all__ = [
    "DeepgramError",
    "DeepgramMessageError",
    "ListenOptions",
    "Metadata",
    "Results",
    "ServerMessage",
    "SpeechStarted",
    "UtteranceEnd",
    "encode_close_stream",
    "encode_error",
    "encode_finalize",
    "encode_keep_alive",
    "encode_metadata",
    "encode_results",
    "encode_speech_started",
    "encode_utterance_end",
    "listen_url",
    "parse_server_message",
]

DeepgramEncoding = Literal["mulaw", "linear16"]
ENCODINGS: Final = {"pcmu": "mulaw", "pcm16": "linear16"}
"""The project's encodings (``AudioChunk.encoding``) by Deepgram's names for them."""


class DeepgramMessageError(ValueError):
    """A server frame that is not a Deepgram live message (the text says what is wrong)."""


@dataclass(frozen=True, slots=True)
class ListenOptions:
    """The query of a live connection (Deepgram's names and meanings).

    Attributes:
        encoding: ``mulaw`` (G.711 mu-law) or ``linear16`` (PCM16 little-endian).
        sample_rate: Hz.
        model: ``nova-3`` and so on.
        language: BCP-47 tag.
        endpointing_ms: silence after which a result is ``speech_final``.
        utterance_end_ms: gap after the last word for ``UtteranceEnd`` (>= 1000).
    """

    encoding: DeepgramEncoding
    sample_rate: int
    model: str = "nova-3"
    language: str = "en-US"
    channels: int = 1
    interim_results: bool = True
    vad_events: bool = True
    endpointing_ms: int = 300
    utterance_end_ms: int = 1000

    def query(self) -> dict[str, str]:
        def flag(value: bool) -> str:
            return "true" if value else "false"

        return {
            "encoding": self.encoding,
            "sample_rate": str(self.sample_rate),
            "channels": str(self.channels),
            "model": self.model,
            "language": self.language,
            "interim_results": flag(self.interim_results),
            "vad_events": flag(self.vad_events),
            "endpointing": str(self.endpointing_ms),
            "utterance_end_ms": str(self.utterance_end_ms),
        }


def listen_url(base: str, options: ListenOptions) -> str:
    """``base`` (``wss://api.deepgram.com/v1/listen``) with ``options`` as its query."""
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{urlencode(options.query())}"


@dataclass(frozen=True, slots=True)
class Results:
    """A transcript of ``start``..``start + duration`` seconds of audio."""

    transcript: str
    start_s: float
    duration_s: float
    is_final: bool
    speech_final: bool
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    last_word_end_s: float


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    timestamp_s: float


@dataclass(frozen=True, slots=True)
class Metadata:
    request_id: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class DeepgramError:
    """The server's ``Error`` message."""

    description: str
    variant: str = ""


ServerMessage = Results | UtteranceEnd | SpeechStarted | Metadata | DeepgramError


def parse_server_message(text: str | bytes) -> ServerMessage:
    """One server text frame -> its message.

    Raises:
        DeepgramMessageError: not JSON, not an object, an unknown ``type``, or
            a field missing or of the wrong type.
    """
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeepgramMessageError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DeepgramMessageError(f"expected a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind == "Results":
        channel = _get(data, "channel", dict)
        alternatives = _get(channel, "alternatives", list)
        best = alternatives[0] if alternatives else {}
        if not isinstance(best, dict):
            raise DeepgramMessageError("Results: channel.alternatives[0] is not an object")
        confidence = best.get("confidence")
        return Results(
            transcript=_get(best, "transcript", str) if best else "",
            start_s=_number(data, "start"),
            duration_s=_number(data, "duration"),
            is_final=bool(data.get("is_final", False)),
            speech_final=bool(data.get("speech_final", False)),
            confidence=float(confidence) if _is_number(confidence) else None,
        )
    if kind == "UtteranceEnd":
        return UtteranceEnd(_number(data, "last_word_end"))
    if kind == "SpeechStarted":
        return SpeechStarted(_number(data, "timestamp"))
    if kind == "Metadata":
        request_id = data.get("request_id", "")
        duration = data.get("duration", 0.0)
        return Metadata(str(request_id), float(duration) if _is_number(duration) else 0.0)
    if kind == "Error":
        description = data.get("description") or data.get("message") or "unknown error"
        return DeepgramError(str(description), str(data.get("variant") or ""))
    raise DeepgramMessageError(f"unknown message type {kind!r}")


def _get(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise DeepgramMessageError(
            f"{data.get('type', 'message')}: {key!r} must be {kind.__name__}, got {value!r:.60}"
        )
    return value


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if not _is_number(value):
        raise DeepgramMessageError(f"{data.get('type')}: {key!r} must be a number, got {value!r}")
    return float(value)


# -- client control messages ---------------------------------------------------


def encode_keep_alive() -> str:
    """Keeps the stream open without audio (Deepgram closes it after 10 s of nothing)."""
    return json.dumps({"type": "KeepAlive"})


def encode_finalize() -> str:
    """Asks for final results of the audio sent so far."""
    return json.dumps({"type": "Finalize"})


def encode_close_stream() -> str:
    """Asks the server to finish, send ``Metadata`` and close."""
    return json.dumps({"type": "CloseStream"})


# -- server messages (for fakes) -------------------------------------------------


def encode_results(
    transcript: str,
    start_s: float,
    duration_s: float,
    *,
    is_final: bool,
    speech_final: bool,
    request_id: str = "",
) -> str:
    """A ``Results`` message with one alternative (words split on spaces, evenly timed)."""
    words = transcript.split()
    step = duration_s / max(1, len(words))
    return json.dumps(
        {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(duration_s, 3),
            "start": round(start_s, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": False,
            "channel": {
                "alternatives": [
                    {
                        "transcript": transcript,
                        "confidence": 0.98,
                        "words": [
                            {
                                "word": w.lower().strip(".,?!"),
                                "start": round(start_s + i * step, 3),
                                "end": round(start_s + (i + 1) * step, 3),
                                "confidence": 0.98,
                                "punctuated_word": w,
                            }
                            for i, w in enumerate(words)
                        ],
                    }
                ]
            },
            "metadata": {
                "request_id": request_id,
                "model_info": {"name": "general-nova-3", "version": "fake", "arch": "nova-3"},
                "model_uuid": "00000000-0000-0000-0000-000000000000",
            },
        }
    )


def encode_utterance_end(last_word_end_s: float) -> str:
    return json.dumps(
        {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(last_word_end_s, 3)}
    )


def encode_speech_started(timestamp_s: float) -> str:
    return json.dumps({"type": "SpeechStarted", "channel": [0], "timestamp": round(timestamp_s, 3)})


def encode_metadata(request_id: str, duration_s: float) -> str:
    return json.dumps(
        {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": request_id,
            "sha256": "",
            "created": "1970-01-01T00:00:00.000Z",
            "duration": round(duration_s, 3),
            "channels": 1,
            "models": [],
            "model_info": {},
        }
    )


def encode_error(description: str, variant: str = "NET-0001") -> str:
    return json.dumps(
        {"type": "Error", "description": description, "message": description, "variant": variant}
    )
