"""The local provider's ears: voice activity detection here, recognition in a worker.

:class:`LocalListener` runs the VAD (:mod:`.vad`, cheap) on every caller
frame in the call's task, and streams each utterance to a
:class:`~.speech.RecognitionStream` while the caller is still speaking:

- on speech start, a stream is opened (the pre-roll and the speech so far
  become its first audio);
- while speech goes on, audio up to the VAD's :attr:`~.vad.VoiceActivityDetector.voiced_until`
  (audio that certainly belongs to the utterance, whatever its end) is sent
  in pieces of at least :data:`FEED_MS`; pieces that pile up while the worker
  is busy go together in its next job;
- after :data:`GUESS_AFTER_MS` of silence (the VAD waits for its hangover,
  600 ms, before it ends the utterance), the worker is asked to finish it
  as if it had ended (:meth:`~.speech.RecognitionStream.guess`), so the
  finishing work runs while the VAD makes sure; if the caller goes on, the
  worker decodes the utterance again (same result as without the guess);
- on speech end, the guess is the answer if nothing was said since;
  otherwise the rest (up to the end of the last voiced frame: the hangover
  is not part of the utterance) goes with the finishing request.
  From then until the transcript is known, the call is owed an answer and
  the recognition counts as answer work for progress reports
  (:mod:`.progress`), queued jobs included.

The call's :class:`~.speech.RecognitionSession` is opened when the listener
starts, so the worker has the call's decoder ready before the caller speaks,
and closed when it ends.

Detection never waits on recognition: utterances are handed over through a
small queue and recognized in order by a task of their own, so the caller's
audio keeps being read whatever a worker is doing.

A lost worker (:class:`~.speech.SpeechWorkerLost`) fails the stage with
kind ``crash``; the pipeline reports ``ProviderFailed``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import structlog
import trio

from switchboard.codecs import Resampler, pcm16_from_bytes, ulaw_decode

from ..context import AudioFormat
from ..messages import CallerAudio, CallerTranscript, SpeechStarted, SpeechStopped
from ..pipeline import Heard, StageFailed
from . import vad
from .progress import WorkTracker
from .speech import (
    Grammar,
    Recognition,
    RecognitionSession,
    RecognitionStream,
    SpeechService,
    SpeechWorkerLost,
)

__all__ = ["FEED_MS", "GUESS_AFTER_MS", "PRE_ROLL_MS", "VAD_RATE", "LocalListener"]

log = structlog.get_logger("switchboard.listener")

VAD_RATE: Final = 8000
"""Hz at which speech is detected and sent to the recognizer."""
PRE_ROLL_MS: Final = 300
"""Audio kept from before the detected start of speech, ms."""
FEED_MS: Final = 200
"""Smallest piece of an utterance sent to its worker while the caller speaks, ms."""
GUESS_AFTER_MS: Final = 300
"""Silence (ms) after which the recognizer finishes the utterance as a guess: longer
than most pauses inside an utterance (the longest in the test speech is 380 ms,
cards-005), half the VAD's 600 ms hangover, so the finishing work gets 300 ms start."""
UTTERANCES_QUEUED: Final = 8
_NO_AUDIO: Final = np.zeros(0, dtype=np.int16)


_Piece = tuple[np.ndarray, bool]
"""Audio of an utterance, in order, and whether to guess its end right after it."""


@dataclass
class _Utterance:
    """One utterance on its way to the recognizer: its audio comes through ``pieces``."""

    start_ms: float
    speech_start_ms: float  # where the speech begins within the utterance's audio
    pieces: trio.MemoryReceiveChannel[_Piece]
    end_ms: float | None = None  # set before ``pieces`` closes
    work: int | None = None  # the WorkTracker token from the end of speech on


class LocalListener:
    """VAD + streaming recognition: caller audio in ``fmt`` -> speech events and transcripts.

    Args:
        fmt: the caller's audio format.
        grammar: the agent's intents.
        speech: where recognition runs (the speech workers, or a fake).
        work: where answer work is recorded for progress reports.
        hangover_ms: the VAD's end-of-speech hangover (:mod:`.vad`).
    """

    def __init__(
        self,
        fmt: AudioFormat,
        grammar: Grammar,
        speech: SpeechService,
        work: WorkTracker | None = None,
        *,
        hangover_ms: int = 600,
    ) -> None:
        self.fmt = fmt
        self.grammar = grammar
        self.speech = speech
        self.work = work if work is not None else WorkTracker()
        self.hangover_ms = hangover_ms

    async def __call__(
        self,
        audio: trio.MemoryReceiveChannel[CallerAudio],
        heard: Callable[[Heard], Awaitable[None]],
    ) -> None:
        session = self.speech.open_session(self.grammar)  # the decoder is built meanwhile
        to_recognizer, utterances = trio.open_memory_channel[_Utterance](UTTERANCES_QUEUED)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._recognize, session, utterances, heard)
                async with to_recognizer:
                    await self._detect(audio, to_recognizer, heard)
        finally:
            session.close()

    # -- detection (the call's task: never waits on a worker) ----------------------------

    async def _detect(
        self,
        audio: trio.MemoryReceiveChannel[CallerAudio],
        to_recognizer: trio.MemorySendChannel[_Utterance],
        heard: Callable[[Heard], Awaitable[None]],
    ) -> None:
        detector = vad.VoiceActivityDetector(sample_rate=VAD_RATE, hangover_ms=self.hangover_ms)
        to_vad = (
            Resampler(self.fmt.sample_rate, VAD_RATE) if self.fmt.sample_rate != VAD_RATE else None
        )
        pre_roll: deque[np.ndarray] = deque()
        pre_roll_samples = 0
        unsent: deque[np.ndarray] = deque()  # utterance audio not yet given to the recognizer
        unsent_samples = 0
        sent = 0  # samples of the utterance given to the recognizer
        pieces: trio.MemorySendChannel[_Piece] | None = None
        utterance: _Utterance | None = None
        start_sample = 0
        guessed_at = -1  # voiced_until when the last guess was asked for
        samples_heard = 0  # samples at VAD_RATE since the stream began

        def take(samples: int) -> np.ndarray:
            """The first ``samples`` of the unsent audio (fewer if there are fewer)."""
            nonlocal unsent_samples
            out: list[np.ndarray] = []
            wanted = samples
            while unsent and wanted > 0:
                head = unsent.popleft()
                if len(head) > wanted:
                    unsent.appendleft(head[wanted:])
                    head = head[:wanted]
                out.append(head)
                wanted -= len(head)
            taken = np.concatenate(out) if out else np.zeros(0, np.int16)
            unsent_samples -= len(taken)
            return taken

        async for message in audio:
            pcm = _decode(message)
            if to_vad is not None:
                pcm = to_vad.process(pcm)
            if pieces is not None:
                unsent.append(pcm)
                unsent_samples += len(pcm)
            else:
                pre_roll.append(pcm)
                pre_roll_samples += len(pcm)
                while pre_roll and pre_roll_samples - len(pre_roll[0]) >= _samples(PRE_ROLL_MS):
                    pre_roll_samples -= len(pre_roll.popleft())
            for event in detector.process(pcm):
                if isinstance(event, vad.SpeechStarted):
                    start_sample = max(0, samples_heard + len(pcm) - pre_roll_samples)
                    unsent, unsent_samples, sent = pre_roll, pre_roll_samples, 0
                    pre_roll, pre_roll_samples = deque(), 0
                    pieces, receive = trio.open_memory_channel[_Piece](math.inf)
                    utterance = _Utterance(
                        start_sample * 1000 / VAD_RATE,
                        max(0, event.sample - start_sample) * 1000 / VAD_RATE,
                        receive,
                    )
                    await heard(SpeechStarted(event.sample * 1000 / VAD_RATE))
                    await to_recognizer.send(utterance)
                elif isinstance(event, vad.SpeechEnded) and pieces is not None:
                    assert utterance is not None
                    await heard(SpeechStopped(event.sample * 1000 / VAD_RATE))
                    # Up to the end of speech (the hangover is dropped); all of it if the
                    # end lies before what was sent (it never does: see voiced_until).
                    rest = max(0, event.sample - start_sample - sent)
                    last = take(rest)
                    if len(last):
                        pieces.send_nowait((last, False))
                    utterance.end_ms = event.sample * 1000 / VAD_RATE
                    utterance.work = self.work.begin("recognizing")  # an answer is owed
                    await pieces.aclose()
                    pieces, utterance = None, None
                    unsent, unsent_samples = deque(), 0
            samples_heard += len(pcm)
            if pieces is not None:
                voiced_until = detector.voiced_until
                certain = voiced_until - start_sample - sent
                silent = samples_heard - voiced_until
                guess = silent >= _samples(GUESS_AFTER_MS) and guessed_at != voiced_until
                if certain >= _samples(FEED_MS) or guess:
                    piece = take(certain)
                    sent += len(piece)
                    pieces.send_nowait((piece, guess))
                    if guess:
                        guessed_at = voiced_until
        if pieces is not None:  # the call ended mid-utterance: nothing to answer
            await pieces.aclose()

    # -- recognition (its own task: waits on workers) -------------------------------------

    async def _recognize(
        self,
        session: RecognitionSession,
        utterances: trio.MemoryReceiveChannel[_Utterance],
        heard: Callable[[Heard], Awaitable[None]],
    ) -> None:
        async for utterance in utterances:
            stream = session.open_stream(VAD_RATE, speech_start_ms=utterance.speech_start_ms)
            try:
                recognition = await self._decode(stream, utterance)
            except SpeechWorkerLost as exc:
                raise StageFailed("crash", f"speech recognition: {exc}") from exc
            finally:
                stream.abandon()
                if utterance.work is not None:
                    self.work.end(utterance.work)
            if recognition is None:
                continue  # the call ended before the utterance did
            if not recognition.transcript and recognition.intent is None:
                continue  # noise, not speech: nothing to answer
            assert utterance.end_ms is not None
            await heard(
                CallerTranscript(
                    recognition.transcript,
                    utterance.start_ms,
                    utterance.end_ms,
                    recognition.intent,
                    round(recognition.confidence, 3),
                )
            )

    async def _decode(self, stream: RecognitionStream, utterance: _Utterance) -> Recognition | None:
        """Feed the utterance as it comes, guess its end at pauses, finish it when it ends
        (None if the call ended first)."""
        pieces = utterance.pieces
        guessed: Recognition | None = None
        ended = False
        while True:
            batch: list[_Piece] = []
            try:
                batch.append(await pieces.receive())
            except trio.EndOfChannel:
                ended = True
            while not ended:  # whatever piled up while the worker was busy goes in one job
                try:
                    batch.append(pieces.receive_nowait())
                except trio.WouldBlock:
                    break
                except trio.EndOfChannel:
                    ended = True
            audio = np.concatenate([piece for piece, _ in batch]) if batch else _NO_AUDIO
            if ended:
                if guessed is not None and not audio.size:
                    return guessed if utterance.end_ms is not None else None
                return await self._finish(stream, utterance, audio if audio.size else None)
            if batch[-1][1]:  # a pause: finish it as a guess while the VAD makes sure
                guessed = await stream.guess(audio)
            elif audio.size:
                guessed = None
                await stream.feed(audio)

    async def _finish(
        self, stream: RecognitionStream, utterance: _Utterance, last: np.ndarray | None
    ) -> Recognition | None:
        if utterance.end_ms is None:
            return None
        started = trio.current_time()
        recognition = await stream.finish(last)
        log.debug(
            "recognized",
            finish_ms=round((trio.current_time() - started) * 1000, 1),
            decode_ms=round(recognition.decode_ms, 1),
            intent=recognition.intent,
        )
        return recognition


def _samples(ms: float) -> int:
    return int(ms * VAD_RATE / 1000)


def _decode(message: CallerAudio) -> np.ndarray:
    chunk = message.chunk
    if chunk.encoding == "pcmu":
        return ulaw_decode(chunk.data)
    return pcm16_from_bytes(chunk.data)
