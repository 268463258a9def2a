"""The recording file: what a call's tape holds, sealed in authenticated segments.

This module is shared ground. Its first part (:class:`Kind`, :class:`Record`,
the provider-event packing) fixes what a recording *contains*; the sealed
file format (envelope header, AES-256-GCM segments) follows below it.

A recording is a sequence of :class:`Record` in the order they happened:
each one a kind, a time on the call's clock (milliseconds since the call
started, ``CallContext.now_ms``) and its bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum


class Kind(IntEnum):
    """What a record holds."""

    CALLER_AUDIO = 1
    """Caller audio as received, in the call's caller format (its wire encoding)."""
    AGENT_AUDIO = 2
    """Agent audio as sent to the caller, in the call's caller format."""
    AGENT_CLEARED = 3
    """Barge-in: the caller's player dropped what it had not played yet (Twilio ``clear``).
    No bytes: agent audio laid out at or after ``t_ms`` was sent but never heard."""
    PROVIDER_EVENT = 4
    """One message a provider instance sent, as it arrived (:func:`pack_provider_event`)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One entry of a call's tape: ``kind``, ``t_ms`` on the call's clock, ``data``."""

    kind: Kind
    t_ms: float
    data: bytes


_SOURCE = struct.Struct("<BB")  # source length, 1 if the message was text


def pack_provider_event(source: str, raw: str | bytes) -> bytes:
    """``source`` (the provider instance, e.g. ``"openai_realtime#1"``, at most 255 UTF-8
    bytes) and the message as it arrived (text frames as UTF-8) in one record's bytes."""
    name = source.encode()[:255]
    is_text = isinstance(raw, str)
    body = raw.encode() if isinstance(raw, str) else raw
    return _SOURCE.pack(len(name), 1 if is_text else 0) + name + body


def unpack_provider_event(data: bytes) -> tuple[str, str | bytes]:
    """The inverse of :func:`pack_provider_event`: ``(source, raw)``.

    Raises:
        ValueError: ``data`` is shorter than the lengths it declares.
    """
    if len(data) < _SOURCE.size:
        raise ValueError("provider event record shorter than its header")
    size, is_text = _SOURCE.unpack_from(data)
    end = _SOURCE.size + size
    if len(data) < end:
        raise ValueError("provider event record shorter than its source name")
    source = data[_SOURCE.size : end].decode()
    body = data[end:]
    return source, (body.decode() if is_text else body)
