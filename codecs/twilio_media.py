"""Twilio Media Streams: the JSON messages of a bidirectional ``<Connect><Stream>``.

Source: Twilio, "Media Streams - WebSocket Messages"
(https://www.twilio.com/docs/voice/media-streams/websocket-messages).

From Twilio to the server: ``connected``, ``start``, ``media``, ``dtmf``,
``mark`` (a mark the server sent has been played, or dropped by ``clear``),
``stop``. From the server to Twilio: ``media``, ``mark``, ``clear``. Audio is
G.711 mu-law at 8000 Hz, mono, base64 in ``media.payload``; Twilio sends one
20 ms frame (160 bytes) per message.

Both directions are here, as typed messages with parse and encode functions,
so the server and a client standing in for Twilio share one definition.
:func:`parse_inbound` and :func:`parse_outbound` raise :class:`MediaStreamError`
(a ``ValueError``) with a short ``reason`` for anything malformed.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode, b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

ENCODING: Final = "audio/x-mulaw"
SAMPLE_RATE: Final = 8000
FRAME_BYTES: Final = 160
"""One 20 ms frame of G.711 mu-law at 8 kHz."""


class MediaStreamError(ValueError):
    """A Media Streams message that cannot be understood.

    Attributes:
        reason: one of ``invalid_json``, ``not_an_object``, ``unknown_event``,
            ``missing_field``, ``bad_field``, ``bad_base64``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# -- Twilio -> server --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    """The stream's metadata; ``custom_parameters`` are TwiML ``<Parameter>`` values."""

    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: Mapping[str, str]
    encoding: str = ENCODING
    sample_rate: int = SAMPLE_RATE
    channels: int = 1


@dataclass(frozen=True, slots=True)
class Media:
    """One chunk of caller audio: ``payload`` is G.711 mu-law bytes."""

    stream_sid: str
    chunk: int
    timestamp_ms: int
    payload: bytes
    track: str = "inbound"


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """Twilio's echo of a mark: the audio sent before it has been played (or cleared)."""

    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str
    call_sid: str
    account_sid: str


Inbound = Connected | Start | Media | Dtmf | MarkPlayed | Stop


# -- server -> Twilio --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    stream_sid: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboundMark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    stream_sid: str


Outbound = OutboundMedia | OutboundMark | Clear


# -- parsing -----------------------------------------------------------------


def _load(text: str | bytes) -> tuple[str, Mapping[str, Any]]:
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MediaStreamError("invalid_json", str(exc)) from None
    if not isinstance(message, dict):
        raise MediaStreamError(
            "not_an_object", f"expected a JSON object, got {type(message).__name__}"
        )
    event = message.get("event")
    if not isinstance(event, str):
        raise MediaStreamError("missing_field", "no 'event'")
    return event, message


def _section(message: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = message.get(name)
    if not isinstance(value, dict):
        raise MediaStreamError(
            "missing_field", f"'{message.get('event')}' message has no '{name}' object"
        )
    return value


def _str(obj: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        if value is None:
            raise MediaStreamError("missing_field", f"{where}.{key} is missing")
        raise MediaStreamError("bad_field", f"{where}.{key} must be a string")
    return value


def _int(obj: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = obj.get(key, default)
    try:
        return int(value)  # Twilio sends numbers as strings ("chunk": "1")
    except (TypeError, ValueError):
        raise MediaStreamError("bad_field", f"{where}.{key} must be an integer") from None


def _payload(obj: Mapping[str, Any], where: str) -> bytes:
    text = _str(obj, "payload", where)
    try:
        return b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MediaStreamError("bad_base64", f"{where}.payload is not valid base64") from None


def parse_inbound(text: str | bytes) -> Inbound:
    """Parse one message Twilio sends.

    Raises:
        MediaStreamError: invalid JSON, an unknown ``event``, a missing or
            mistyped field, or a payload that is not base64.
    """
    event, m = _load(text)
    if event == "media":
        media = _section(m, "media")
        return Media(
            stream_sid=_str(m, "streamSid", "media"),
            chunk=_int(media, "chunk", "media", 0),
            timestamp_ms=_int(media, "timestamp", "media", 0),
            payload=_payload(media, "media"),
            track=_str(media, "track", "media", "inbound"),
        )
    if event == "mark":
        return MarkPlayed(_str(m, "streamSid", "mark"), _str(_section(m, "mark"), "name", "mark"))
    if event == "start":
        start = _section(m, "start")
        params = start.get("customParameters", {})
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()
        ):
            raise MediaStreamError(
                "bad_field", "start.customParameters must map strings to strings"
            )
        fmt = start.get("mediaFormat", {})
        if not isinstance(fmt, dict):
            raise MediaStreamError("bad_field", "start.mediaFormat must be an object")
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise MediaStreamError("bad_field", "start.tracks must be a list of strings")
        return Start(
            stream_sid=_str(start, "streamSid", "start", m.get("streamSid")),
            call_sid=_str(start, "callSid", "start"),
            account_sid=_str(start, "accountSid", "start", ""),
            tracks=tuple(tracks),
            custom_parameters=dict(params),
            encoding=_str(fmt, "encoding", "start.mediaFormat", ENCODING),
            sample_rate=_int(fmt, "sampleRate", "start.mediaFormat", SAMPLE_RATE),
            channels=_int(fmt, "channels", "start.mediaFormat", 1),
        )
    if event == "dtmf":
        return Dtmf(_str(m, "streamSid", "dtmf"), _str(_section(m, "dtmf"), "digit", "dtmf"))
    if event == "stop":
        stop = m.get("stop", {})
        if not isinstance(stop, dict):
            raise MediaStreamError("bad_field", "stop must be an object")
        return Stop(
            stream_sid=_str(m, "streamSid", "stop"),
            call_sid=_str(stop, "callSid", "stop", ""),
            account_sid=_str(stop, "accountSid", "stop", ""),
        )
    if event == "connected":
        return Connected(
            _str(m, "protocol", "connected", "Call"), _str(m, "version", "connected", "")
        )
    raise MediaStreamError("unknown_event", f"unknown event {event[:40]!r}")


def parse_outbound(text: str | bytes) -> Outbound:
    """Parse one message a server sends to Twilio (what a stand-in for Twilio reads).

    Raises:
        MediaStreamError: as :func:`parse_inbound`.
    """
    event, m = _load(text)
    sid = _str(m, "streamSid", event)
    if event == "media":
        return OutboundMedia(sid, _payload(_section(m, "media"), "media"))
    if event == "mark":
        return OutboundMark(sid, _str(_section(m, "mark"), "name", "mark"))
    if event == "clear":
        return Clear(sid)
    raise MediaStreamError("unknown_event", f"unknown event {event[:40]!r}")


# -- encoding ----------------------------------------------------------------


def encode_outbound(message: Outbound) -> str:
    """Encode a server -> Twilio message as its JSON text."""
    if isinstance(message, OutboundMedia):
        payload = b64encode(message.payload).decode("ascii")
        return json.dumps(
            {"event": "media", "streamSid": message.stream_sid, "media": {"payload": payload}}
        )
    if isinstance(message, OutboundMark):
        return json.dumps(
            {"event": "mark", "streamSid": message.stream_sid, "mark": {"name": message.name}}
        )
    return json.dumps({"event": "clear", "streamSid": message.stream_sid})


@dataclass
class InboundEncoder:
    """Encodes Twilio -> server messages with Twilio's sequence numbers and chunk counters.

    For a client that stands in for Twilio (the ``switchboard call`` command,
    tests). ``timestamp_ms`` of media counts 20 ms per 160-byte frame.
    """

    stream_sid: str
    call_sid: str
    account_sid: str
    _sequence: int = field(default=0, init=False)
    _chunk: int = field(default=0, init=False)
    _audio_ms: int = field(default=0, init=False)

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: Mapping[str, str]) -> str:
        return json.dumps(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "start": {
                    "streamSid": self.stream_sid,
                    "accountSid": self.account_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": dict(custom_parameters),
                    "mediaFormat": {"encoding": ENCODING, "sampleRate": SAMPLE_RATE, "channels": 1},
                },
            }
        )

    def media(self, payload: bytes) -> str:
        self._chunk += 1
        message = {
            "event": "media",
            "sequenceNumber": self._next(),
            "streamSid": self.stream_sid,
            "media": {
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": str(self._audio_ms),
                "payload": b64encode(payload).decode("ascii"),
            },
        }
        self._audio_ms += len(payload) * 1000 // SAMPLE_RATE
        return json.dumps(message)

    def dtmf(self, digit: str) -> str:
        return json.dumps(
            {
                "event": "dtmf",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        return json.dumps(
            {
                "event": "mark",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        return json.dumps(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )
