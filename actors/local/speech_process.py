"""What runs inside a speech worker process: the jobs :mod:`.workers` sends it.

Each function here is a job: it runs in a worker process (never in the
runtime's main process), takes and returns picklable values, and keeps its
state in this module's globals, which live as long as the process:

- the process's PocketSphinx :class:`~.decoding.Decoders` (built on the first
  recognition job: a worker that only synthesizes never loads PocketSphinx);
- one :class:`~.asr.Recognizer` per :class:`~.speech.Grammar` (the most
  recently used :data:`RECOGNIZERS_KEPT`);
- the utterances in progress, by stream id;
- how many calls have a session here (:func:`reserve`, :func:`release`):
  the process keeps one open-search decoder ready per call, built while the
  call's greeting plays, and drops the spare ones when calls end.

A job for a stream this process does not hold (the process was replaced
after a crash, a kill or an idle retirement) raises :class:`StreamGone`.
Synthesis is stateless: eSpeak NG is loaded and unloaded around each text
(see :mod:`.tts`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

import numpy as np

from switchboard.codecs import Resampler, pcm16_to_bytes, ulaw_encode

from ..messages import AudioChunk, Encoding
from . import tts
from .speech import Grammar, Recognition

if TYPE_CHECKING:
    from .asr import Decoders, Recognizer, UtteranceDecoder

__all__ = [
    "Opening",
    "StreamGone",
    "abandon",
    "feed",
    "finish",
    "guess",
    "process_id",
    "release",
    "reserve",
    "synthesize",
]

RECOGNIZERS_KEPT: Final = 16
"""Grammars whose recognizer a worker keeps (compiling one takes a few ms)."""

Opening = tuple[Grammar, int, float]
"""How a stream starts, sent with its first job: (grammar, sample rate Hz, speech start ms)."""


class StreamGone(Exception):  # noqa: N818 - what happened, like SpeechWorkerLost
    """This process holds no utterance with that stream id (it is not the one that began it)."""


_decoders: Decoders | None = None
_recognizers: OrderedDict[Grammar, Recognizer] = OrderedDict()
_streams: dict[int, UtteranceDecoder] = {}
_sessions = 0


def _recognizer(grammar: Grammar) -> Recognizer:
    global _decoders
    from .asr import Decoders, Recognizer  # PocketSphinx only where recognition runs

    if _decoders is None:
        _decoders = Decoders()
    recognizer = _recognizers.get(grammar)
    if recognizer is None:
        recognizer = _recognizers[grammar] = Recognizer(grammar, decoders=_decoders)
        while len(_recognizers) > RECOGNIZERS_KEPT:
            _recognizers.popitem(last=False)
    _recognizers.move_to_end(grammar)
    return recognizer


def _stream(stream_id: int, opening: Opening | None) -> UtteranceDecoder:
    if opening is not None:
        grammar, sample_rate, speech_start_ms = opening
        stream = _recognizer(grammar).start(sample_rate, speech_start_ms=speech_start_ms)
        _streams[stream_id] = stream
        return stream
    known = _streams.get(stream_id)
    if known is None:
        raise StreamGone(f"speech worker {os.getpid()} holds no stream {stream_id}")
    return known


def reserve(grammar: Grammar) -> int:
    """A call's session begins here: its grammar's recognizer and a decoder for it; the pid."""
    global _sessions
    _sessions += 1
    _recognizer(grammar).decoders.ensure_built(_sessions)
    return os.getpid()


def release() -> None:
    """A call's session ended: drop a spare decoder (one is always kept)."""
    global _sessions
    _sessions = max(0, _sessions - 1)
    if _decoders is not None:
        _decoders.trim(max(_sessions, len(_streams)))


def feed(stream_id: int, pcm: np.ndarray, opening: Opening | None = None) -> None:
    """Decode the next audio of a stream (``opening`` with its first job).

    Raises:
        StreamGone: the stream is not in this process.
    """
    _stream(stream_id, opening).feed(pcm)


def finish(stream_id: int, pcm: np.ndarray, opening: Opening | None = None) -> Recognition:
    """The stream's last audio (may be empty), then its recognition; the stream is closed.

    Raises:
        StreamGone: the stream is not in this process.
    """
    stream = _stream(stream_id, opening)
    try:
        if pcm.size:
            stream.feed(pcm)
        return stream.finish()
    finally:
        stream.abandon()
        _streams.pop(stream_id, None)


def guess(stream_id: int, pcm: np.ndarray, opening: Opening | None = None) -> Recognition:
    """The stream's next audio (may be empty), then its recognition as if it ended there;
    the stream stays open (see :meth:`~.decoding.UtteranceDecoder.guess`).

    Raises:
        StreamGone: the stream is not in this process.
    """
    stream = _stream(stream_id, opening)
    if pcm.size:
        stream.feed(pcm)
    return stream.guess()


def abandon(stream_id: int) -> None:
    """Drop a stream (its decoder goes back to the process's pool); unknown ids are fine."""
    stream = _streams.pop(stream_id, None)
    if stream is not None:
        stream.abandon()


def synthesize(text: str, voice: str, encoding: Encoding, sample_rate: int) -> AudioChunk:
    """``text`` in eSpeak NG voice ``voice``, as one chunk of ``encoding`` at ``sample_rate`` Hz.

    Raises:
        ValueError: blank text, an unknown voice, or an unsupported rate.
        RuntimeError: eSpeak NG failed (see :mod:`.tts`).
    """
    pcm = tts.synthesize(text, voice=voice)
    if sample_rate != tts.SAMPLE_RATE:
        resampler = Resampler(tts.SAMPLE_RATE, sample_rate)
        pcm = np.concatenate([resampler.process(pcm), resampler.flush()])
    data = ulaw_encode(pcm) if encoding == "pcmu" else pcm16_to_bytes(pcm)
    return AudioChunk(data, encoding, sample_rate)


def process_id() -> int:
    """The worker's pid (tests: which process serves a request)."""
    return os.getpid()
