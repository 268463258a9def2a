"""What a provider instance told the call, as tape records a replay can play back.

A recorded call keeps, per provider instance (source ``<mode>#<generation>``,
as on the wire-level records), three kinds of entry in
:data:`~switchboard.codecs.recording_format.Kind.PROVIDER_OUTPUT` records:

* :class:`InstanceStarted`: the supervisor started the instance (``greet``,
  ``respond_now``): the origin of its outputs' offsets;
* :class:`InstanceOutput`: one message it sent the supervisor
  (a :data:`~.messages.ProviderOutput`, its failure at the end included);
* :class:`InstanceEvent`: one event it logged itself (``type``, ``payload``);
* :class:`InstanceInput`: the supervisor sent it a message other than caller audio
  (a tool result, a truncation, an answer owed): its class name, so a replay keeps
  what the instance said *in answer* after it.

Each body is MessagePack (``msgspec.msgpack``): ``["start", {"greet", "respond_now"}]``,
``["out", "<message class>", {fields}]`` (audio bytes as MessagePack bin) or
``["event", "<type>", {payload}]`` or ``["in", "<message class>"]``. Decoding is
total: a body this build cannot read raises :class:`ValueError` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, get_args

import msgspec

from switchboard.codecs.recording_format import pack_provider_event, unpack_provider_event

from .messages import ProviderOutput

__all__ = [
    "InstanceEvent",
    "InstanceInput",
    "InstanceOutput",
    "InstanceRecord",
    "InstanceStarted",
    "pack_event",
    "pack_input",
    "pack_output",
    "pack_started",
    "unpack",
]

_OUTPUT_TYPES: Final[dict[str, type[Any]]] = {cls.__name__: cls for cls in get_args(ProviderOutput)}
_ENCODER: Final = msgspec.msgpack.Encoder(
    enc_hook=str
)  # a payload value MessagePack lacks: its text


@dataclass(frozen=True, slots=True)
class InstanceStarted:
    greet: bool
    respond_now: bool


@dataclass(frozen=True, slots=True)
class InstanceOutput:
    message: ProviderOutput


@dataclass(frozen=True, slots=True)
class InstanceEvent:
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InstanceInput:
    type: str


InstanceRecord = InstanceStarted | InstanceOutput | InstanceEvent | InstanceInput


def pack_started(source: str, *, greet: bool, respond_now: bool) -> bytes:
    """The record body for instance ``source`` starting."""
    body = _ENCODER.encode(["start", {"greet": greet, "respond_now": respond_now}])
    return pack_provider_event(source, body)


def pack_output(source: str, message: ProviderOutput) -> bytes:
    """The record body for ``message`` from instance ``source`` (about a microsecond)."""
    return pack_provider_event(source, _ENCODER.encode(["out", type(message).__name__, message]))


def pack_event(source: str, type_: str, payload: Any) -> bytes:
    """The record body for event ``type_`` that instance ``source`` logged."""
    return pack_provider_event(source, _ENCODER.encode(["event", type_, payload]))


def pack_input(source: str, message: object) -> bytes:
    """The record body for ``message`` (not caller audio) sent to instance ``source``."""
    return pack_provider_event(source, _ENCODER.encode(["in", type(message).__name__]))


def unpack(data: bytes) -> tuple[str, InstanceRecord]:
    """``(source, record)`` from a ``PROVIDER_OUTPUT`` record's bytes.

    Raises:
        ValueError: not a body of this format, or a message class this build lacks.
    """
    source, body = unpack_provider_event(data)
    if isinstance(body, str):
        raise ValueError(f"{source}: an instance record's body is binary, got text")
    try:
        entry = msgspec.msgpack.decode(body)
        tag = entry[0]
        if tag == "start":
            fields = entry[1]
            return source, InstanceStarted(bool(fields["greet"]), bool(fields["respond_now"]))
        if tag == "out":
            cls = _OUTPUT_TYPES.get(entry[1])
            if cls is None:
                raise ValueError(f"unknown provider message {entry[1]!r}")
            return source, InstanceOutput(msgspec.convert(entry[2], cls))
        if tag == "event":
            return source, InstanceEvent(str(entry[1]), dict(entry[2]))
        if tag == "in":
            return source, InstanceInput(str(entry[1]))
        raise ValueError(f"unknown instance record {tag!r}")
    except (msgspec.DecodeError, msgspec.ValidationError, IndexError, KeyError, TypeError) as exc:
        raise ValueError(f"{source}: unreadable instance record: {exc}") from exc
