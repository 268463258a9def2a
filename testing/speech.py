"""The fakes' voice and ears: text to PCM16, and caller audio to utterances.

A fake speaks its script with eSpeak NG (the runtime's offline voice), so a
person listening to a test call hears the words; it hears the caller with the
runtime's voice activity detector, as a provider's server-side VAD would.
Synthesis runs on the calling thread on purpose: a fake under Trio's
MockClock must not let virtual time jump while it "thinks".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from switchboard.actors.local import tts, vad
from switchboard.codecs import Pcm16, Resampler, pcm16_from_bytes, ulaw_decode

__all__ = ["Ear", "Heard", "speak", "speak_bytes"]


@lru_cache(maxsize=256)
def _speak(text: str, sample_rate: int) -> bytes:
    return tts.synthesize_at(text, sample_rate).astype("<i2").tobytes()


def speak_bytes(text: str, sample_rate: int) -> bytes:
    """``text`` spoken as little-endian PCM16 at ``sample_rate`` Hz (cached; b"" if blank)."""
    return _speak(text, sample_rate) if text.strip() else b""


def speak(text: str, sample_rate: int) -> Pcm16:
    """``text`` spoken as an int16 array, shape (n,), at ``sample_rate`` Hz."""
    return pcm16_from_bytes(speak_bytes(text, sample_rate))


@dataclass(frozen=True)
class Heard:
    """The caller started (``speaking``) or stopped speaking at ``at_ms`` of their audio."""

    speaking: bool
    at_ms: float


class Ear:
    """Server-side VAD for a fake: feed caller audio, get speech starts and ends.

    Args:
        sample_rate: of the audio fed to :meth:`hear`, Hz.
        encoding: ``"pcm16"`` (little-endian) or ``"pcmu"`` (G.711 mu-law).
        silence_ms: silence that ends an utterance (OpenAI's
            ``silence_duration_ms``; at least 100).
    """

    VAD_RATE = 8000

    def __init__(self, sample_rate: int, encoding: str = "pcm16", *, silence_ms: int = 500):
        if encoding not in ("pcm16", "pcmu"):
            raise ValueError(f"encoding must be 'pcm16' or 'pcmu', got {encoding!r}")
        self._encoding = encoding
        self._resampler = Resampler(sample_rate, self.VAD_RATE)
        self._vad = vad.VoiceActivityDetector(
            self.VAD_RATE, hangover_ms=max(100, round(silence_ms / 20) * 20)
        )
        self.heard_ms = 0.0

    @property
    def speaking(self) -> bool:
        return self._vad.in_speech

    def hear(self, audio: bytes) -> list[Heard]:
        """Feed a chunk of caller audio; returns what changed, in order."""
        pcm = ulaw_decode(audio) if self._encoding == "pcmu" else pcm16_from_bytes(audio)
        pcm = self._resampler.process(np.asarray(pcm, dtype=np.int16))
        events = self._vad.process(pcm)
        self.heard_ms += 1000.0 * len(pcm) / self.VAD_RATE
        return [
            Heard(isinstance(e, vad.SpeechStarted), 1000.0 * e.sample / self.VAD_RATE)
            for e in events
        ]
