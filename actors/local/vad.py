"""Voice activity detection (VAD) on PCM16: frame energy against an adaptive noise floor.

Pure code: no clocks, no I/O; time is counted in samples from the start of
the stream. Feed chunks of any length to :meth:`VoiceActivityDetector.process`;
they are cut into frames internally, so any split of a stream gives the same
events.

The rule, per frame of ``frame_ms`` (20 ms):

- Level: ``10 log10(mean(x^2) + 1)``, dB re 1 LSB^2 (digital silence is 0 dB,
  a full-scale sine about 87 dB).
- Noise floor: the first ``calibration_ms`` set it to their quietest frame;
  afterwards, while nobody speaks, it follows the level of the unvoiced
  frames (an exponential average with time constant ``floor_tau_ms``, so it
  settles on the mean level of steady line noise or comfort noise); during
  speech it can only fall. It is never below the quietest frame of the last
  ``floor_window_ms``: speech pauses within that window, noise does not, so a
  step up in line noise becomes the floor after at most ``floor_window_ms``
  (a step from digital silence to loud noise is taken for speech until then:
  one false utterance).
- Voiced: outside speech a frame must be ``start_db`` above the floor, inside
  speech ``stay_db`` above it (hysteresis: the quiet ends of words keep an
  utterance going), and always at least ``min_level_db`` (so a quiet line is
  never speech).
- Start: ``start_ms`` of consecutive voiced frames (the minimum speech
  duration) give :class:`SpeechStarted` at the first sample of the first.
- End: ``hangover_ms`` without a voiced frame gives :class:`SpeechEnded` at the
  end of the last voiced frame. The default 600 ms keeps an utterance whole
  across the pauses between words (the longest measured in the test speech is
  380 ms, cards-005) and ends it about 0.6 s after the caller stops.

Defaults measured on the test speech (``tests/test_local_vad.py``): one
utterance per line, boundaries within 100 ms of the speech, for eSpeak lines
and for real recordings through the phone path, at 8 and 16 kHz.

Errors: ``ValueError`` for a non-positive rate or duration, or a frame that
is not a whole number of samples; ``TypeError``/``ValueError`` for a chunk
that is not int16 of shape (n,).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final, final

import numpy as np

from switchboard.codecs import Pcm16

__all__ = ["SpeechEnded", "SpeechStarted", "VadEvent", "VoiceActivityDetector"]


@final
@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began at ``sample`` (from the stream start: the first voiced frame's first)."""

    sample: int

    def __post_init__(self) -> None:
        if self.sample < 0:
            raise ValueError(f"sample must not be negative, got {self.sample}")


@final
@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """Speech ended at ``sample`` (from the stream start: the end of the last voiced frame)."""

    sample: int

    def __post_init__(self) -> None:
        if self.sample < 0:
            raise ValueError(f"sample must not be negative, got {self.sample}")


VadEvent = SpeechStarted | SpeechEnded
"""An event of :meth:`VoiceActivityDetector.process`."""


class VoiceActivityDetector:
    """Streaming voice activity detector for one mono stream (see the module docstring).

    Args:
        sample_rate: Hz (8000 for phone calls, 16000 for browsers).
        frame_ms: analysis frame, ms; ``sample_rate * frame_ms / 1000`` must
            be a whole number of samples.
        start_ms: voiced audio needed to declare speech (minimum duration).
        hangover_ms: audio without a voiced frame that ends speech.
        start_db: level above the noise floor that starts speech, dB.
        stay_db: level above the noise floor that keeps speech going, dB.
        min_level_db: lowest level that is ever voiced, dB re 1 LSB^2
            (40 dB is an RMS of 100, -50 dBFS).
        calibration_ms: leading audio whose quietest frame sets the floor.
        floor_tau_ms: time constant of the floor's average.
        floor_window_ms: the floor is at least the quietest frame of this
            much recent audio.

    Raises:
        ValueError: a rate or duration is not positive, ``stay_db`` exceeds
            ``start_db``, or the frame is not a whole number of samples.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        frame_ms: int = 20,
        start_ms: int = 60,
        hangover_ms: int = 600,
        start_db: float = 12.0,
        stay_db: float = 8.0,
        min_level_db: float = 40.0,
        calibration_ms: int = 200,
        floor_tau_ms: int = 400,
        floor_window_ms: int = 5000,
    ) -> None:
        for name, value in (
            ("sample_rate", sample_rate),
            ("frame_ms", frame_ms),
            ("start_ms", start_ms),
            ("hangover_ms", hangover_ms),
            ("calibration_ms", calibration_ms),
            ("floor_window_ms", floor_window_ms),
            ("floor_tau_ms", floor_tau_ms),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if (sample_rate * frame_ms) % 1000:
            raise ValueError(f"a {frame_ms} ms frame at {sample_rate} Hz is not whole samples")
        if stay_db > start_db:
            raise ValueError(f"stay_db ({stay_db}) must not exceed start_db ({start_db})")
        self.sample_rate: Final = sample_rate
        self.frame: Final = sample_rate * frame_ms // 1000
        """Samples per frame."""
        self.start_db: Final = start_db
        self.stay_db: Final = stay_db
        self.min_level_db: Final = min_level_db
        self._start_frames = -(-start_ms // frame_ms)
        self._hangover_frames = -(-hangover_ms // frame_ms)
        self._calibration_frames = -(-calibration_ms // frame_ms)
        self._floor_alpha = 1.0 - math.exp(-frame_ms / floor_tau_ms)
        self._recent: deque[float] = deque(maxlen=-(-floor_window_ms // frame_ms))
        self._pending = np.zeros(0, dtype=np.int16)
        self._frames_seen = 0
        self._floor_db = float("inf")
        self._in_speech = False
        self._voiced_run = 0
        self._unvoiced_run = 0
        self._run_start = 0  # sample of the current voiced run's first frame
        self._last_voiced_end = 0

    @property
    def in_speech(self) -> bool:
        """Whether speech has started and not yet ended."""
        return self._in_speech

    @property
    def voiced_until(self) -> int:
        """The end of the last voiced frame, in samples from the stream start.

        While speech goes on, the utterance's end (:class:`SpeechEnded`) will
        be at this sample or later, so the audio before it certainly belongs
        to the utterance: a recognizer may take it before the utterance ends.
        """
        return self._last_voiced_end

    @property
    def noise_floor_db(self) -> float:
        """The current noise floor, dB re 1 LSB^2 (inf before the first frame)."""
        return self._floor_db

    def process(self, pcm: Pcm16) -> list[VadEvent]:
        """Take the next chunk; return the events its complete frames produce.

        Args:
            pcm: int16 array, shape (n,), any n >= 0, at ``sample_rate``.

        Returns:
            Events in stream order (at most one start and one end per frame).

        Raises:
            TypeError: ``pcm`` is not an int16 numpy array.
            ValueError: ``pcm`` is not one-dimensional.
        """
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
            raise TypeError("pcm must be a numpy int16 array of shape (n,)")
        if pcm.ndim != 1:
            raise ValueError(f"pcm must be mono with shape (n,), got shape {pcm.shape}")
        data = np.concatenate([self._pending, pcm]) if self._pending.size else pcm
        usable = data.shape[0] - data.shape[0] % self.frame
        self._pending = data[usable:].copy()
        if not usable:
            return []
        frames = data[:usable].astype(np.float64).reshape(-1, self.frame)
        levels = 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1.0)
        events: list[VadEvent] = []
        for level in levels.tolist():
            event = self._step(level)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: end any speech in progress (the partial frame is dropped).

        Returns:
            ``[SpeechEnded]`` if speech was in progress, else ``[]``. The
            detector keeps its noise floor and sample count.
        """
        self._pending = self._pending[:0]
        self._voiced_run = 0
        if not self._in_speech:
            return []
        self._in_speech = False
        self._unvoiced_run = 0
        return [SpeechEnded(self._last_voiced_end)]

    def _step(self, level: float) -> VadEvent | None:
        start = self._frames_seen * self.frame
        self._frames_seen += 1
        if self._frames_seen <= self._calibration_frames:
            self._floor_db = min(self._floor_db, level)
        above = self.stay_db if self._in_speech else self.start_db
        voiced = level >= max(self._floor_db + above, self.min_level_db)
        self._recent.append(level)
        if self._frames_seen > self._calibration_frames:
            if not voiced and (not self._in_speech or level < self._floor_db):
                self._floor_db += self._floor_alpha * (level - self._floor_db)
            if len(self._recent) == self._recent.maxlen:
                self._floor_db = max(self._floor_db, min(self._recent))
        if voiced:
            if self._voiced_run == 0:
                self._run_start = start
            self._voiced_run += 1
            self._unvoiced_run = 0
            self._last_voiced_end = start + self.frame
            if not self._in_speech and self._voiced_run >= self._start_frames:
                self._in_speech = True
                return SpeechStarted(self._run_start)
            return None
        self._voiced_run = 0
        self._unvoiced_run += 1
        if self._in_speech and self._unvoiced_run >= self._hangover_frames:
            self._in_speech = False
            return SpeechEnded(self._last_voiced_end)
        return None
