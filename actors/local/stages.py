"""The ``local`` provider's stages for the cascaded pipeline: offline, no keys.

- :class:`LocalListener`: voice activity detection on every frame as it
  arrives (:mod:`.vad`), PocketSphinx on each finished utterance
  (:class:`~.asr.Recognizer`: open-vocabulary transcript plus the agent's
  intent), in a worker thread so listening never waits on recognition.
- :class:`IntentPolicy`: the deterministic dialogue policy
  (:func:`.policy.plan_reply`) and its tool call; a turn heard by another
  provider before a failover is understood from its text (an intent phrase
  it contains).
- :class:`EspeakVoice`: eSpeak NG in a worker thread, through the agent's
  speech cache (:class:`~.assets.LocalAssets`; the greeting is synthesized
  before the call), already in the caller's format.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
import trio

from switchboard.codecs import Resampler, pcm16_from_bytes, ulaw_decode
from switchboard.orchestrator.agents import AgentSpec

from ..context import AudioFormat
from ..messages import (
    CallerAudio,
    CallerSaid,
    CallerTranscript,
    ConversationItem,
    SpeechStarted,
    SpeechStopped,
)
from ..pipeline import CallTool, Heard, Play, Say, ToolCall
from . import vad
from .asr import Recognizer
from .assets import LocalAssets
from .policy import plan_reply

__all__ = ["EspeakVoice", "IntentPolicy", "LocalListener"]

VAD_RATE = 8000
PRE_ROLL_MS = 300  # audio kept from before the detected start of speech


@dataclass(frozen=True)
class Utterance:
    pcm: np.ndarray  # int16, VAD_RATE
    start_ms: float
    end_ms: float


class LocalListener:
    """VAD + PocketSphinx: caller audio in ``fmt`` -> speech events and transcripts."""

    def __init__(self, fmt: AudioFormat, recognizer: Recognizer) -> None:
        self.fmt = fmt
        self.recognizer = recognizer

    async def __call__(
        self,
        audio: trio.MemoryReceiveChannel[CallerAudio],
        heard: Callable[[Heard], Awaitable[None]],
    ) -> None:
        to_recognizer, utterances = trio.open_memory_channel[Utterance](8)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._recognize, utterances, heard)
            async with to_recognizer:
                await self._detect(audio, to_recognizer, heard)

    async def _detect(
        self,
        audio: trio.MemoryReceiveChannel[CallerAudio],
        to_recognizer: trio.MemorySendChannel[Utterance],
        heard: Callable[[Heard], Awaitable[None]],
    ) -> None:
        detector = vad.VoiceActivityDetector(sample_rate=VAD_RATE)
        to_vad = (
            Resampler(self.fmt.sample_rate, VAD_RATE) if self.fmt.sample_rate != VAD_RATE else None
        )
        pre_roll: deque[np.ndarray] = deque()
        pre_roll_samples = 0
        speech: list[np.ndarray] | None = None
        start_sample = 0
        samples_heard = 0  # samples at VAD_RATE since the stream began
        async for message in audio:
            pcm = _decode(message)
            if to_vad is not None:
                pcm = to_vad.process(pcm)
            if speech is not None:
                speech.append(pcm)
            else:
                pre_roll.append(pcm)
                pre_roll_samples += len(pcm)
                while pre_roll and pre_roll_samples - len(pre_roll[0]) >= _samples(PRE_ROLL_MS):
                    pre_roll_samples -= len(pre_roll.popleft())
            for event in detector.process(pcm):
                if isinstance(event, vad.SpeechStarted):
                    speech = list(pre_roll)
                    start_sample = max(0, samples_heard + len(pcm) - pre_roll_samples)
                    pre_roll.clear()
                    pre_roll_samples = 0
                    await heard(SpeechStarted(event.sample * 1000 / VAD_RATE))
                elif isinstance(event, vad.SpeechEnded) and speech is not None:
                    await heard(SpeechStopped(event.sample * 1000 / VAD_RATE))
                    pcm_all = np.concatenate(speech)
                    # Keep the utterance up to the end of speech (drop the hangover).
                    keep = max(0, event.sample - start_sample)
                    await to_recognizer.send(
                        Utterance(
                            pcm_all[:keep] if keep else pcm_all,
                            start_sample * 1000 / VAD_RATE,
                            event.sample * 1000 / VAD_RATE,
                        )
                    )
                    speech = None
            samples_heard += len(pcm)

    async def _recognize(
        self,
        utterances: trio.MemoryReceiveChannel[Utterance],
        heard: Callable[[Heard], Awaitable[None]],
    ) -> None:
        async for utterance in utterances:
            recognition = await trio.to_thread.run_sync(
                self.recognizer.recognize, utterance.pcm, VAD_RATE
            )
            if not recognition.transcript and recognition.intent is None:
                continue  # noise, not speech: nothing to answer
            await heard(
                CallerTranscript(
                    recognition.transcript,
                    utterance.start_ms,
                    utterance.end_ms,
                    recognition.intent,
                    round(recognition.confidence, 3),
                )
            )


class IntentPolicy:
    """The agent's intents -> a reply, calling the intent's tool first if it has one."""

    def __init__(self, agent: AgentSpec) -> None:
        self.agent = agent

    async def __call__(
        self,
        history: Sequence[ConversationItem],
        utterance: CallerTranscript | None,
        say: Say,
        call_tool: CallTool,
    ) -> None:
        if utterance is not None:
            intent = utterance.intent
        else:  # a turn heard by the provider before a failover: only its text is known
            last = history[-1] if history else None
            intent = self.intent_of(last.text if isinstance(last, CallerSaid) else "")
        plan = plan_reply(self.agent, intent)
        if plan.tool is None:
            await say(plan.reply())
            return
        result = await call_tool(ToolCall(plan.tool))
        await say(plan.reply(result.ok, result.output))

    def intent_of(self, text: str) -> str | None:
        """The intent one of whose phrases ``text`` contains (the longest phrase wins)."""
        said = " ".join(re.findall(r"[a-z']+", text.lower()))
        matches = [
            (len(phrase), intent.name)
            for intent in self.agent.intents
            for phrase in intent.phrases
            if f" {phrase.lower()} " in f" {said} "
        ]
        return max(matches)[1] if matches else None


class EspeakVoice:
    """eSpeak NG through the agent's speech cache, in the caller's format ``fmt``."""

    def __init__(self, assets: LocalAssets, fmt: AudioFormat) -> None:
        self.assets = assets
        self.fmt = fmt

    async def __call__(self, text: str, play: Play) -> None:
        chunk = await trio.to_thread.run_sync(self.assets.speech, text, self.fmt)
        await play(chunk)


def _samples(ms: float) -> int:
    return int(ms * VAD_RATE / 1000)


def _decode(message: CallerAudio) -> np.ndarray:
    chunk = message.chunk
    if chunk.encoding == "pcmu":
        return ulaw_decode(chunk.data)
    return pcm16_from_bytes(chunk.data)
