"""The ``local`` provider: an offline cascaded pipeline inside the runtime.

Caller audio -> voice activity detection -> PocketSphinx (open vocabulary for
the transcript, the agent's intents for understanding) -> the deterministic
dialogue policy (and its tool call) -> eSpeak NG -> agent audio. No network,
no keys: the default for a new installation and the last link of every
fallback chain.

Two tasks: the listener runs voice activity detection on every frame as it
arrives and hands finished utterances to the responder, which answers them
one at a time (recognition and synthesis run in worker threads, so the call's
other actors never wait on them). The greeting is spoken first, from audio
synthesized before the call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import count
from typing import TYPE_CHECKING

import numpy as np
import structlog
import trio

from switchboard.codecs import Resampler, pcm16_from_bytes, ulaw_decode

from ..context import CallContext, EventSink
from ..messages import (
    AgentAudio,
    AgentTranscript,
    AudioChunk,
    CallerAudio,
    CallerTranscript,
    ProviderReady,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    ToolResult,
    ToProvider,
    ToSupervisor,
    TruncateResponse,
)
from . import vad
from .assets import LocalAssets

if TYPE_CHECKING:
    from ..providers import ProviderSetup
from .policy import plan_reply

log = structlog.get_logger("switchboard.local")

VAD_RATE = 8000
PRE_ROLL_MS = 300  # audio kept from before the detected start of speech
TOOL_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Utterance:
    pcm: np.ndarray  # int16, VAD_RATE
    start_ms: float
    end_ms: float


class LocalProvider:
    name = "local"

    def __init__(self, ctx: CallContext, assets: LocalAssets, *, greet: bool = True) -> None:
        self.ctx = ctx
        self.assets = assets
        self.greet = greet
        self._ids = count(1)
        self._tool_results: dict[str, trio.MemorySendChannel[ToolResult]] = {}

    async def __call__(
        self,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        outbox: trio.MemorySendChannel[ToSupervisor],
        events: EventSink,
    ) -> None:
        await outbox.send(ProviderReady(self.name))
        to_responder, utterances = trio.open_memory_channel[Utterance](8)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._respond, utterances, outbox)
            await self._listen(inbox, to_responder, outbox)
            nursery.cancel_scope.cancel()

    # -- listening -----------------------------------------------------------

    async def _listen(
        self,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        to_responder: trio.MemorySendChannel[Utterance],
        outbox: trio.MemorySendChannel[ToSupervisor],
    ) -> None:
        detector = vad.VoiceActivityDetector(sample_rate=VAD_RATE)
        fmt = self.ctx.caller_format
        to_vad = Resampler(fmt.sample_rate, VAD_RATE) if fmt.sample_rate != VAD_RATE else None
        pre_roll: deque[np.ndarray] = deque()
        pre_roll_samples = 0
        speech: list[np.ndarray] | None = None
        heard = 0  # samples at VAD_RATE since the stream began
        async with to_responder:
            async for message in inbox:
                if isinstance(message, ToolResult):
                    waiter = self._tool_results.pop(message.call_id, None)
                    if waiter is not None:
                        waiter.send_nowait(message)
                    continue
                if isinstance(message, TruncateResponse):
                    continue  # every reply is one chunk, already sent: nothing left to stop
                pcm = _decode(message)
                if to_vad is not None:
                    pcm = to_vad.process(pcm)
                if speech is not None:
                    speech.append(pcm)
                else:
                    pre_roll.append(pcm)
                    pre_roll_samples += len(pcm)
                    while pre_roll and pre_roll_samples - len(pre_roll[0]) >= _ms(PRE_ROLL_MS):
                        pre_roll_samples -= len(pre_roll.popleft())
                for event in detector.process(pcm):
                    if isinstance(event, vad.SpeechStarted):
                        speech = list(pre_roll)
                        start_sample = max(0, heard + len(pcm) - pre_roll_samples)
                        pre_roll.clear()
                        pre_roll_samples = 0
                        await outbox.send(SpeechStarted(event.sample * 1000 / VAD_RATE))
                    elif isinstance(event, vad.SpeechEnded) and speech is not None:
                        await outbox.send(SpeechStopped(event.sample * 1000 / VAD_RATE))
                        audio = np.concatenate(speech)
                        # Keep the utterance up to the end of speech (drop the hangover).
                        keep = max(0, event.sample - start_sample)
                        await to_responder.send(
                            Utterance(
                                audio[:keep] if keep else audio,
                                start_sample * 1000 / VAD_RATE,
                                event.sample * 1000 / VAD_RATE,
                            )
                        )
                        speech = None
                heard += len(pcm)

    # -- answering -----------------------------------------------------------

    async def _respond(
        self,
        utterances: trio.MemoryReceiveChannel[Utterance],
        outbox: trio.MemorySendChannel[ToSupervisor],
    ) -> None:
        agent = self.ctx.agent
        if self.greet:
            await outbox.send(ResponseStarted("greeting", greeting=True))
            await self._speak(outbox, "greeting", agent.greeting)
        async for utterance in utterances:
            recognition = await trio.to_thread.run_sync(
                self.assets.recognizer.recognize, utterance.pcm, VAD_RATE
            )
            if not recognition.transcript and recognition.intent is None:
                continue  # noise, not speech: nothing to answer
            await outbox.send(
                CallerTranscript(
                    recognition.transcript,
                    utterance.start_ms,
                    utterance.end_ms,
                    recognition.intent,
                    round(recognition.confidence, 3),
                )
            )
            plan = plan_reply(agent, recognition.intent)
            response_id = f"resp_{next(self._ids)}"
            await outbox.send(ResponseStarted(response_id))
            text = plan.reply()
            if plan.tool is not None:
                result = await self._call_tool(outbox, plan.tool, response_id)
                text = plan.reply(result.ok, result.output)
            await self._speak(outbox, response_id, text)

    async def _call_tool(
        self, outbox: trio.MemorySendChannel[ToSupervisor], tool: str, response_id: str
    ) -> ToolResult:
        call_id = f"call_{response_id}"
        send, receive = trio.open_memory_channel[ToolResult](1)
        self._tool_results[call_id] = send
        await outbox.send(ToolCallRequested(call_id, tool, {}, response_id))
        with trio.move_on_after(TOOL_TIMEOUT_S):
            return await receive.receive()
        self._tool_results.pop(call_id, None)
        return ToolResult(call_id, tool, False, "the tool did not answer in time", response_id)

    async def _speak(
        self, outbox: trio.MemorySendChannel[ToSupervisor], response_id: str, text: str
    ) -> None:
        chunk = await trio.to_thread.run_sync(self.assets.speech, text, self.ctx.caller_format)
        await outbox.send(AgentAudio(chunk, response_id))
        await outbox.send(AgentTranscript(text, response_id))
        await outbox.send(ResponseDone(response_id))


def build(setup: ProviderSetup) -> LocalProvider:
    """The ``local`` provider for a call (see :mod:`switchboard.actors.providers`)."""
    return LocalProvider(setup.ctx, setup.assets.get(setup.ctx.agent), greet=setup.greet)


def _ms(ms: float) -> int:
    return int(ms * VAD_RATE / 1000)


def _decode(message: CallerAudio) -> np.ndarray:
    chunk: AudioChunk = message.chunk
    if chunk.encoding == "pcmu":
        return ulaw_decode(chunk.data)
    return pcm16_from_bytes(chunk.data)
