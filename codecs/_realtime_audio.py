"""The OpenAI Realtime audio events, the ones sent for every chunk, as ``msgspec`` schemas.

``input_audio_buffer.append`` (client -> server) and
``response.output_audio.delta`` (server -> client; beta name
``response.audio.delta``) carry the call's audio, one per chunk in each
direction, so they are read and written by a schema (one decode with the
base64 included: about 1 us, against about 10 us for the general reader of
:mod:`.openai_realtime`, which reads every other event). A text that is not
one of these two events, or is one but malformed, is left to the general
reader (``None`` here), so every error is still named the same way there.

Source: OpenAI API reference, "Realtime: client events" /
``input_audio_buffer.append`` and "Realtime: server events" /
``response.output_audio.delta``.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta, Struct

Index = Annotated[int, Meta(ge=0, le=2**31)]


class AppendWire(Struct, frozen=True, tag="input_audio_buffer.append", tag_field="type"):
    audio: bytes
    event_id: str = ""


class AudioDeltaWire(Struct, frozen=True, tag="response.output_audio.delta", tag_field="type"):
    response_id: str
    item_id: str
    delta: bytes
    output_index: Index = 0
    content_index: Index = 0
    event_id: str = ""


class BetaAudioDeltaWire(AudioDeltaWire, frozen=True, tag="response.audio.delta"):
    """The beta interface's name for the same event (``OpenAI-Beta: realtime=v1``)."""


_APPEND: Final = msgspec.json.Decoder(AppendWire)
_DELTA: Final = msgspec.json.Decoder(AudioDeltaWire | BetaAudioDeltaWire)
_ENCODER: Final = msgspec.json.Encoder()


def read_append(text: str | bytes) -> AppendWire | None:
    """``text`` as an ``input_audio_buffer.append``, or None (another event, or malformed)."""
    try:
        return _APPEND.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return None


def read_delta(text: str | bytes) -> AudioDeltaWire | None:
    """``text`` as a ``response.output_audio.delta`` (either name), or None."""
    try:
        return _DELTA.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return None


def write_append(audio: bytes, event_id: str = "") -> str:
    return _ENCODER.encode(AppendWire(audio, event_id)).decode()


def write_delta(
    response_id: str,
    item_id: str,
    delta: bytes,
    output_index: int,
    content_index: int,
    event_id: str,
    *,
    beta: bool = False,
) -> str:
    wire = BetaAudioDeltaWire if beta else AudioDeltaWire
    message = wire(response_id, item_id, delta, output_index, content_index, event_id)
    return _ENCODER.encode(message).decode()
