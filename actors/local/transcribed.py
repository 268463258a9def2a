"""The ``local`` provider driven by what a recorded call heard: a replay's what-if stand-in.

A what-if replay (``switchboard replay --chain local``, ``--agent FILE``) may
need a ``local`` instance the recording does not have. Recognition and
synthesis run in speech worker processes on the wall clock, which a replay on
virtual time cannot wait for, so this stand-in keeps the provider's own
decisions and replaces its ears and voice:

* ears (:class:`TranscriptListener`): the caller's speech as the recorded call
  heard it (``speech.started``/``speech.stopped``/``turn:user`` events, from
  whichever provider heard it), each at its recorded time on the call's clock,
  with the intent the recording says (the local provider's recognizer matches
  the agent's phrases better than its open transcript shows) when the agent
  still has it, else the intent found in the transcript with the agent's
  phrases (:meth:`~.stages.IntentPolicy.intent_of`), so a changed agent file
  matches differently;
* mind: the real :class:`~.stages.IntentPolicy` and the shared
  :class:`~switchboard.actors.pipeline.Pipeline` (turn taking, tool calls,
  barge-in, the greeting);
* voice (:class:`SilentVoice`): silence as long as eSpeak NG would take to say
  the text (:data:`MS_PER_CHARACTER`), so the timing of what the caller hears is
  kept, not its sound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from ..context import AudioFormat, CallContext
from ..messages import (
    AudioChunk,
    CallerAudio,
    CallerTranscript,
    ConversationItem,
    SpeechStarted,
    SpeechStopped,
)
from ..pipeline import Pipeline
from ..pipeline.stages import Heard, Play
from .stages import IntentPolicy

__all__ = [
    "MS_PER_CHARACTER",
    "SilentVoice",
    "TimedHeard",
    "TranscriptListener",
    "heard_script",
    "silence",
    "transcribed",
]

MS_PER_CHARACTER = 70.0
"""eSpeak NG's default rate, 175 words a minute, is about 14 characters a second."""


@dataclass(frozen=True, slots=True)
class TimedHeard:
    """What the caller's speech amounted to at ``t_ms`` on the call's clock."""

    t_ms: float
    heard: Heard


class TranscriptListener:
    """A :class:`~switchboard.actors.pipeline.stages.Listener` reporting ``script`` (what
    was heard from its start on), each item at its time; the caller's audio is drained."""

    def __init__(self, ctx: CallContext, script: Sequence[TimedHeard], policy: IntentPolicy):
        self._ctx = ctx
        self._script = script
        self._policy = policy
        self._intents = {intent.name for intent in ctx.agent.intents}

    async def __call__(
        self,
        audio: trio.MemoryReceiveChannel[CallerAudio],
        heard: Callable[[Heard], Awaitable[None]],
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, audio)
            start_ms = self._ctx.now_ms()
            for item in self._script:
                if item.t_ms < start_ms:
                    continue  # heard by the provider before this one
                await trio.sleep_until(self._ctx.t0 + item.t_ms / 1000.0)
                said = item.heard
                if isinstance(said, CallerTranscript):
                    intent = said.intent if said.intent in self._intents else None
                    intent = intent or self._policy.intent_of(said.text)
                    said = CallerTranscript(said.text, said.start_ms, said.end_ms, intent, 1.0)
                await heard(said)
            nursery.cancel_scope.cancel()
        await trio.sleep_forever()  # the call goes on; nothing more will be heard


async def _drain(audio: trio.MemoryReceiveChannel[CallerAudio]) -> None:
    async for _ in audio:
        while True:
            try:
                audio.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break


class SilentVoice:
    """A :class:`~switchboard.actors.pipeline.stages.Voice` playing silence in ``fmt`` as
    long as eSpeak NG would speak the text."""

    def __init__(self, fmt: AudioFormat) -> None:
        self._fmt = fmt

    async def __call__(self, text: str, play: Play) -> None:
        await play(silence(self._fmt, len(text.strip()) * MS_PER_CHARACTER))


def silence(fmt: AudioFormat, duration_ms: float) -> AudioChunk:
    """``duration_ms`` of silence in ``fmt`` (G.711 mu-law's zero is 0xFF)."""
    samples = round(fmt.sample_rate * duration_ms / 1000.0)
    if fmt.encoding == "pcmu":
        return AudioChunk(b"\xff" * samples, "pcmu", fmt.sample_rate)
    return AudioChunk(b"\x00\x00" * samples, "pcm16", fmt.sample_rate)


def transcribed(
    ctx: CallContext,
    script: Sequence[TimedHeard],
    *,
    greet: bool,
    conversation: Sequence[ConversationItem],
    respond_now: bool,
) -> Pipeline:
    """The stand-in ``local`` provider (see the module docstring)."""
    policy = IntentPolicy(ctx.agent)
    return Pipeline(
        "local",
        ctx,
        listener=TranscriptListener(ctx, script, policy),
        thinker=policy,
        voice=SilentVoice(ctx.caller_format),
        conversation=conversation,
        greet=greet,
        respond_now=respond_now,
    )


def heard_script(events: Sequence[dict[str, object]]) -> list[TimedHeard]:
    """What a call heard of its caller, from its event rows: ``speech.started``,
    ``speech.stopped`` and ``turn:user`` with their times (not a ``typed`` turn: the
    replay's caller types it again, as :class:`~.messages.CallerText`)."""
    script: list[TimedHeard] = []
    for e in events:
        p = e.get("payload")
        payload = p if isinstance(p, dict) else {}
        t_ms = float(e["t_ms"])  # type: ignore[arg-type]
        if e["type"] == "speech.started":
            script.append(
                TimedHeard(t_ms, SpeechStarted(float(payload.get("audio_offset_ms") or 0)))
            )
        elif e["type"] == "speech.stopped":
            script.append(
                TimedHeard(t_ms, SpeechStopped(float(payload.get("audio_offset_ms") or 0)))
            )
        elif e["type"] == "turn:user" and not payload.get("typed"):  # typed: the peer types it
            text = str(payload.get("text") or "")
            start = float(payload.get("audio_start_ms") or 0)
            end = float(payload.get("audio_end_ms") or 0)
            intent = payload.get("intent")
            heard = CallerTranscript(text, start, end, intent if isinstance(intent, str) else None)
            script.append(TimedHeard(t_ms, heard))
    return script
