"""The three stages a cascaded pipeline is built from, and how a stage fails.

A stage is any object with the ``__call__`` below (``typing.Protocol``): the
``local`` provider's offline parts (VAD + PocketSphinx, the intent policy,
eSpeak NG) and the ``cascaded`` provider's network parts (Deepgram live,
chat completions, an OpenAI-compatible or Deepgram TTS) fill the same slots.

Stages hand their output to callbacks rather than yielding it, so a stage may
hold a cancel scope or a network stream open while it produces (Trio forbids
yielding from an async generator inside one).

A stage that meets a provider failure raises :class:`StageFailed` with the
:data:`~switchboard.actors.messages.FailureKind` the failover policy needs;
the pipeline reports it as ``ProviderFailed`` and ends. Any other exception
is a bug and propagates (the supervisor reports a ``crash``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from switchboard.orchestrator.errors import ProviderError

from ..messages import (
    AudioChunk,
    CallerAudio,
    CallerTranscript,
    ConversationItem,
    FailureKind,
    SpeechStarted,
    SpeechStopped,
    ToolResult,
)

__all__ = [
    "CallTool",
    "Heard",
    "Listener",
    "Play",
    "Say",
    "StageFailed",
    "Thinker",
    "ToolCall",
    "Voice",
]

Heard = SpeechStarted | SpeechStopped | CallerTranscript
"""What a listener reports: the caller started or stopped speaking, or a finished
utterance with its transcript (and, for ``local``, its intent and confidence)."""


@dataclass(frozen=True)
class ToolCall:
    """A function call a thinker makes; ``call_id`` None lets the pipeline name it."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    call_id: str | None = None


Say = Callable[[str], Awaitable[None]]
"""``await say(delta)``: the next piece of the response's text (any size, even one token)."""

CallTool = Callable[[ToolCall], Awaitable[ToolResult]]
"""``await call_tool(call)``: run a tool through the runtime and wait for its result."""

Play = Callable[[AudioChunk], Awaitable[None]]
"""``await play(chunk)``: the next chunk of synthesized audio, in any format."""


class Listener(Protocol):
    """Caller audio in, :data:`Heard` out.

    Runs until ``audio`` is closed (the call ended), reporting in order.
    Raises :class:`StageFailed` when its service fails.
    """

    async def __call__(
        self,
        audio: trio.MemoryReceiveChannel[CallerAudio],
        heard: Callable[[Heard], Awaitable[None]],
    ) -> None: ...


class Thinker(Protocol):
    """The conversation so far (ending with the caller's turn) -> the agent's answer.

    ``history`` is the whole conversation, the caller's latest turn last;
    ``utterance`` is that turn as heard (None when the turn has no audio: one
    the caller typed, or one heard by an earlier provider). The answer goes
    to ``say`` piece by piece as it is produced; a tool is run with
    ``await call_tool(...)``, which returns its result. Raises
    :class:`StageFailed` when its service fails.
    """

    async def __call__(
        self,
        history: Sequence[ConversationItem],
        utterance: CallerTranscript | None,
        say: Say,
        call_tool: CallTool,
    ) -> None: ...


class Voice(Protocol):
    """One sentence (or a few, ready together) of text -> audio, streamed to ``play``.

    The chunks may be in any encoding and rate; the pipeline converts them to
    the caller's format. Raises :class:`StageFailed` when its service fails.
    """

    async def __call__(self, text: str, play: Play) -> None: ...


class StageFailed(ProviderError):  # noqa: N818 - past tense, like ProviderFailed
    """A stage's service failed in a way the failover policy acts on.

    Attributes:
        kind: ``http_5xx`` (a 5xx answer or refused handshake), ``error_event``
            (a stream that ended with an error), ``disconnect`` (the connection
            was lost), ``connect_timeout``, ``crash`` (a local engine's worker
            process died or hung).
        detail: what happened, for the event log.
    """

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind: FailureKind = kind
        self.detail = detail
