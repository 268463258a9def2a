"""Twilio Media Streams: the JSON messages of a bidirectional ``<Connect><Stream>``.

Source: Twilio, "Media Streams - WebSocket Messages"
(https://www.twilio.com/docs/voice/media-streams/websocket-messages).

From Twilio to the server: ``connected``, ``start``, ``media``, ``dtmf``,
``mark`` (a mark the server sent has been played, or dropped by ``clear``),
``stop``. From the server to Twilio: ``media``, ``mark``, ``clear``. Audio is
G.711 mu-law at 8000 Hz, mono, base64 in ``media.payload``; Twilio sends one
20 ms frame (160 bytes) per message.

Every message is a ``msgspec`` struct shaped like the wire (tagged on
``event``; nested objects are structs of their own), so the schema is the
parser: one decode per message, base64 included, about 1 us for a ``media``
frame. Twilio writes numbers as strings (``"chunk": "1"``); both forms are
read, and a number out of range (negative, above 2**53) is a decode error,
never an exception deeper in. SIDs are letters, digits, ``_`` or ``-`` (at
most 64), a DTMF digit is one key, so what the call logs of a message can be
stored (no U+0000, no lone surrogate: :mod:`._text`). Unknown fields are
ignored, unknown events are an error; an error's detail quotes the peer's
text escaped and bounded. Convenience properties give the flat view the actors use
(``Media.payload``, ``Start.custom_parameters``, ...).

:func:`parse_inbound` and :func:`parse_outbound` raise :class:`MediaStreamError`
(a ``ValueError``) with a short ``reason`` for anything malformed; the
encoders return the message's JSON text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta, Struct

from .wire_text import quote

ENCODING: Final = "audio/x-mulaw"
SAMPLE_RATE: Final = 8000
FRAME_BYTES: Final = 160
"""One 20 ms frame of G.711 mu-law at 8 kHz."""

Count = Annotated[int, Meta(ge=0, le=2**53)]
"""A sequence number, chunk index or millisecond count: JSON-safe, never negative."""
Sid = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
"""A Twilio SID (``CA``/``MZ``/``AC`` and 32 hex digits; test peers use shorter ones)."""
Digit = Annotated[str, Meta(pattern=r"^[0-9*#A-Da-d]$")]
"""One DTMF key: 0-9, ``*``, ``#``, or A-D."""

REASONS: Final = frozenset(
    {
        "invalid_json",
        "not_an_object",
        "unknown_event",
        "missing_field",
        "bad_field",
        "bad_base64",
        "too_large",
    }
)
MAX_INBOUND_CHARS: Final = 64 * 1024
"""Twilio's frames are small (a 20 ms ``media`` frame is about 400 characters, a
``start`` with its custom parameters a few KB): a longer one is refused unread."""


class MediaStreamError(ValueError):
    """A Media Streams message that cannot be understood.

    Attributes:
        reason: one of :data:`REASONS`: ``invalid_json`` (not JSON, not UTF-8,
            nested too deep), ``not_an_object``, ``unknown_event``,
            ``missing_field``, ``bad_field`` (wrong type or out of range),
            ``bad_base64``, ``too_large`` (over :data:`MAX_INBOUND_CHARS`).
        detail: what was wrong and where (a JSON path such as ``$.media.chunk``).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# -- Twilio -> server --------------------------------------------------------


class Connected(Struct, frozen=True, tag="connected", tag_field="event"):
    protocol: str = "Call"
    version: str = ""


class MediaFormat(Struct, frozen=True, rename="camel"):
    encoding: str = ENCODING
    sample_rate: Annotated[int, Meta(ge=1, le=384_000)] = SAMPLE_RATE
    channels: Annotated[int, Meta(ge=1, le=8)] = 1


class StartBody(Struct, frozen=True, rename="camel"):
    """``start``'s object; ``custom_parameters`` are the TwiML ``<Parameter>`` values."""

    call_sid: Sid
    stream_sid: Sid | None = None
    account_sid: str = ""
    tracks: tuple[str, ...] = ("inbound",)
    custom_parameters: dict[str, str] = {}
    media_format: MediaFormat = MediaFormat()


class Start(Struct, frozen=True, tag="start", tag_field="event"):
    """The stream's metadata (the stream SID is ``start.streamSid``, else the top-level one)."""

    start: StartBody
    top_stream_sid: Sid | None = msgspec.field(default=None, name="streamSid")

    def __post_init__(self) -> None:
        if self.start.stream_sid is None and self.top_stream_sid is None:
            raise ValueError("Object missing required field `streamSid` - at `$.start`")

    @property
    def stream_sid(self) -> str:
        return self.start.stream_sid or self.top_stream_sid or ""

    @property
    def call_sid(self) -> str:
        return self.start.call_sid

    @property
    def account_sid(self) -> str:
        return self.start.account_sid

    @property
    def tracks(self) -> tuple[str, ...]:
        return self.start.tracks

    @property
    def custom_parameters(self) -> Mapping[str, str]:
        return self.start.custom_parameters

    @property
    def encoding(self) -> str:
        return self.start.media_format.encoding

    @property
    def sample_rate(self) -> int:
        return self.start.media_format.sample_rate

    @property
    def channels(self) -> int:
        return self.start.media_format.channels


class MediaBody(Struct, frozen=True):
    """``media``'s object: ``payload`` is G.711 mu-law bytes (base64 on the wire)."""

    payload: bytes
    track: str = "inbound"
    chunk: Count = 0
    timestamp: Count = 0
    """Milliseconds since the stream started."""


class Media(Struct, frozen=True, tag="media", tag_field="event"):
    """One chunk of caller audio."""

    stream_sid: Sid = msgspec.field(name="streamSid")
    media: MediaBody

    @property
    def payload(self) -> bytes:
        return self.media.payload

    @property
    def timestamp_ms(self) -> int:
        return self.media.timestamp

    @property
    def chunk(self) -> int:
        return self.media.chunk

    @property
    def track(self) -> str:
        return self.media.track


class DtmfBody(Struct, frozen=True):
    digit: Digit
    track: str = "inbound_track"


class Dtmf(Struct, frozen=True, tag="dtmf", tag_field="event"):
    stream_sid: Sid = msgspec.field(name="streamSid")
    dtmf: DtmfBody

    @property
    def digit(self) -> str:
        return self.dtmf.digit


class MarkBody(Struct, frozen=True):
    name: str


class MarkPlayed(Struct, frozen=True, tag="mark", tag_field="event"):
    """Twilio's echo of a mark: the audio sent before it has been played (or cleared)."""

    stream_sid: Sid = msgspec.field(name="streamSid")
    mark: MarkBody

    @property
    def name(self) -> str:
        return self.mark.name


class StopBody(Struct, frozen=True, rename="camel"):
    call_sid: str = ""
    account_sid: str = ""


class Stop(Struct, frozen=True, tag="stop", tag_field="event"):
    stream_sid: Sid = msgspec.field(name="streamSid")
    stop: StopBody = StopBody()

    @property
    def call_sid(self) -> str:
        return self.stop.call_sid

    @property
    def account_sid(self) -> str:
        return self.stop.account_sid


Inbound = Connected | Start | Media | Dtmf | MarkPlayed | Stop


class _AdmissionParameters(Struct, frozen=True):
    token: str = ""
    session_id: str | None = None


class _AdmissionBody(Struct, frozen=True, rename="camel"):
    call_sid: Sid
    custom_parameters: _AdmissionParameters = _AdmissionParameters()


class StartAdmission(Struct, frozen=True, tag="start", tag_field="event"):
    """What admitting a stream needs of its ``start``, and nothing else: the CallSid and
    the ``token`` / ``session_id`` parameters (every other field is left unread)."""

    start: _AdmissionBody

    @property
    def call_sid(self) -> str:
        return self.start.call_sid

    @property
    def token(self) -> str:
        return self.start.custom_parameters.token

    @property
    def session_id(self) -> str | None:
        return self.start.custom_parameters.session_id


PreStart = Connected | StartAdmission


# -- server -> Twilio --------------------------------------------------------


class OutboundMediaBody(Struct, frozen=True):
    payload: bytes


class OutboundMedia(Struct, frozen=True, tag="media", tag_field="event"):
    stream_sid: Sid = msgspec.field(name="streamSid")
    media: OutboundMediaBody

    @property
    def payload(self) -> bytes:
        return self.media.payload


class OutboundMark(Struct, frozen=True, tag="mark", tag_field="event"):
    stream_sid: Sid = msgspec.field(name="streamSid")
    mark: MarkBody

    @property
    def name(self) -> str:
        return self.mark.name


class Clear(Struct, frozen=True, tag="clear", tag_field="event"):
    stream_sid: Sid = msgspec.field(name="streamSid")


Outbound = OutboundMedia | OutboundMark | Clear


def media(stream_sid: str, payload: bytes) -> OutboundMedia:
    """A ``media`` message of agent audio (G.711 mu-law bytes) for Twilio."""
    return OutboundMedia(stream_sid, OutboundMediaBody(payload))


def mark(stream_sid: str, name: str) -> OutboundMark:
    """A ``mark`` message: Twilio echoes it once the audio sent before it has played."""
    return OutboundMark(stream_sid, MarkBody(name))


# -- parsing -----------------------------------------------------------------

_INBOUND: Final = msgspec.json.Decoder(Inbound, strict=False)  # strict=False: "1" reads as 1
_PRE_START: Final = msgspec.json.Decoder(PreStart, strict=False)
_OUTBOUND: Final = msgspec.json.Decoder(Outbound)
_ENCODER: Final = msgspec.json.Encoder()


def _error(exc: Exception) -> MediaStreamError:
    """The named error for a ``msgspec`` decode failure (its text quoted: :func:`quote`)."""
    text = str(exc)
    detail = quote(text)
    if isinstance(exc, RecursionError):
        return MediaStreamError("invalid_json", "nested too deeply")
    if not isinstance(exc, msgspec.ValidationError):
        return MediaStreamError("invalid_json", detail)
    if text.startswith("Expected `object`, got") and " - at `" not in text:
        return MediaStreamError("not_an_object", detail)
    if text.startswith("Invalid value") and text.endswith("at `$.event`"):
        return MediaStreamError("unknown_event", detail)
    if text.startswith("Object missing required field"):
        return MediaStreamError("missing_field", detail)
    if text.startswith("Invalid base64"):
        return MediaStreamError("bad_base64", detail)
    return MediaStreamError("bad_field", detail)


def parse_inbound(text: str | bytes) -> Inbound:
    """Parse one message Twilio sends.

    Raises:
        MediaStreamError: invalid JSON, an unknown ``event``, a missing or
            mistyped field, a number out of range, a payload that is not
            base64, or a frame longer than :data:`MAX_INBOUND_CHARS`.
    """
    if len(text) > MAX_INBOUND_CHARS:
        raise MediaStreamError("too_large", f"a frame of {len(text)} characters")
    try:
        return _INBOUND.decode(text)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _error(exc) from None


def parse_pre_start(text: str | bytes) -> PreStart:
    """Parse a message of a stream not yet admitted: ``connected``, or ``start`` read only
    as far as its admission needs (:class:`StartAdmission`); the whole ``start`` is read
    with :func:`parse_inbound` once the admission token is spent.

    Raises:
        MediaStreamError: as :func:`parse_inbound` (any other event is ``unknown_event``).
    """
    if len(text) > MAX_INBOUND_CHARS:
        raise MediaStreamError("too_large", f"a frame of {len(text)} characters")
    try:
        return _PRE_START.decode(text)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _error(exc) from None


def parse_outbound(text: str | bytes) -> Outbound:
    """Parse one message a server sends to Twilio (what a stand-in for Twilio reads).

    Raises:
        MediaStreamError: as :func:`parse_inbound`.
    """
    try:
        return _OUTBOUND.decode(text)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _error(exc) from None


# -- encoding ----------------------------------------------------------------


def encode_outbound(message: Outbound) -> str:
    """Encode a server -> Twilio message as its JSON text."""
    return _ENCODER.encode(message).decode()


def _json(message: Mapping[str, Any]) -> str:
    return _ENCODER.encode(message).decode()


@dataclass
class InboundEncoder:
    """Encodes Twilio -> server messages with Twilio's sequence numbers and chunk counters.

    For a client that stands in for Twilio (the ``switchboard call`` command,
    tests). Numbers are written as strings, as Twilio writes them;
    ``timestamp`` of media counts 20 ms per 160-byte frame.
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
        return _json({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: Mapping[str, str]) -> str:
        return _json(
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
                "payload": payload,
            },
        }
        self._audio_ms += len(payload) * 1000 // SAMPLE_RATE
        return _json(message)

    def dtmf(self, digit: str) -> str:
        return _json(
            {
                "event": "dtmf",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        return _json(
            {
                "event": "mark",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        return _json(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )
