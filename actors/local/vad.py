"""Voice activity detection on PCM16, by frame energy against an adaptive noise floor.

Pure code: time is counted in samples from the stream's start, no clocks.
A frame (``frame_ms``) is voiced when its energy is ``threshold_db`` above
the noise floor (and above an absolute minimum, so digital silence is never
voiced); speech starts after ``start_ms`` of voiced frames and ends after
``hangover_ms`` without one, so the pauses between words do not split an
utterance. The noise floor follows the quietest recent frames (it falls at
once, and rises slowly while nobody speaks), so steady line noise and comfort
noise are not speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from switchboard.codecs import Pcm16


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began at ``sample`` (the first voiced frame's first sample)."""

    sample: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """Speech ended at ``sample`` (just after the last voiced frame)."""

    sample: int


VadEvent = SpeechStarted | SpeechEnded


class VoiceActivityDetector:
    """Streaming VAD; :meth:`process` takes chunks of any length.

    Args:
        sample_rate: Hz (8000 for phone calls).
        frame_ms: analysis frame length.
        start_ms: voiced audio needed to declare speech.
        hangover_ms: unvoiced audio needed to declare the end of speech.
        threshold_db: how far above the noise floor a voiced frame is.
        min_level_db: absolute minimum energy of a voiced frame (dB re 1 LSB^2).
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        frame_ms: int = 20,
        start_ms: int = 60,
        hangover_ms: int = 600,
        threshold_db: float = 12.0,
        min_level_db: float = 40.0,
    ) -> None:
        self.sample_rate = sample_rate
        self.frame = sample_rate * frame_ms // 1000
        self.start_frames = max(1, start_ms // frame_ms)
        self.hangover_frames = max(1, hangover_ms // frame_ms)
        self.hangover_ms = hangover_ms
        self.threshold_db = threshold_db
        self.min_level_db = min_level_db
        self._pending = np.zeros(0, dtype=np.int16)
        self._position = 0  # samples analysed so far
        self._floor_db: float | None = None
        self._voiced_run = 0
        self._unvoiced_run = 0
        self._in_speech = False
        self._run_start = 0
        self._last_voiced_end = 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def process(self, pcm: Pcm16) -> list[VadEvent]:
        """Analyse the next chunk (int16, shape (n,)); return the events it completes."""
        data = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        usable = len(data) - len(data) % self.frame
        self._pending = data[usable:].copy()
        if not usable:
            return []
        frames = data[:usable].astype(np.float64).reshape(-1, self.frame)
        levels_db = 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1.0)
        events: list[VadEvent] = []
        for level in levels_db:
            events.extend(self._step(float(level)))
            self._position += self.frame
        return events

    def _step(self, level_db: float) -> list[VadEvent]:
        if self._floor_db is None:
            self._floor_db = level_db
        voiced = level_db >= max(self._floor_db + self.threshold_db, self.min_level_db)
        if not voiced:  # the floor tracks the quiet: down at once, up slowly
            rate = 0.5 if level_db < self._floor_db else 0.02
            self._floor_db += rate * (level_db - self._floor_db)
        events: list[VadEvent] = []
        if voiced:
            if self._voiced_run == 0:
                self._run_start = self._position
            self._voiced_run += 1
            self._unvoiced_run = 0
            self._last_voiced_end = self._position + self.frame
            if not self._in_speech and self._voiced_run >= self.start_frames:
                self._in_speech = True
                events.append(SpeechStarted(self._run_start))
        else:
            self._voiced_run = 0
            self._unvoiced_run += 1
            if self._in_speech and self._unvoiced_run >= self.hangover_frames:
                self._in_speech = False
                events.append(SpeechEnded(self._last_voiced_end))
        return events
