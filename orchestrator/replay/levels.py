"""Audio levels of a call's two tracks, per fixed-length bin, for the timeline and its page.

Both tracks are laid out as the caller heard them (:func:`switchboard.codecs.wav.track_layout`:
queued chunks play back to back, a barge-in's clear cuts the agent audio not yet
heard), from the tape's records or from the stereo WAV the recording routes serve
(left caller, right agent). Per bin of ``bin_ms`` milliseconds, each track gets:

* ``peak``: the largest absolute sample, 0..1 of full scale (the page's waveform);
* ``rms``: the root mean square, 0..1 of full scale (who is speaking: a bin above
  :data:`SPEECH_RMS` is speech; about -42 dBFS, well under speech and above a line's hiss).

Pure: arrays in, arrays out; the WAV is read through its ``read(start, end)``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from switchboard.codecs.recording_format import Kind, Record
from switchboard.codecs.wav import WAV_HEADER_BYTES, track_layout

__all__ = [
    "SPEECH_RMS",
    "TRACK_NAMES",
    "Levels",
    "audio_format",
    "levels_of_records",
    "levels_of_wav",
]

SPEECH_RMS: Final = 0.008
"""A bin whose RMS passes this (0..1 of full scale, about -42 dBFS) holds speech."""
TRACK_NAMES: Final = ("caller", "agent")
_READ_FRAMES: Final = 1 << 16

Floats = npt.NDArray[np.float64]


class WavReader(Protocol):
    """A PCM16 WAV file read by byte range (``codecs/wav.py``'s ``WavSource``)."""

    @property
    def size(self) -> int: ...

    def read(self, start: int, end: int) -> bytes: ...


@dataclass(frozen=True)
class Levels:
    """Per-bin levels of both tracks: ``peak[name]`` and ``rms[name]`` are float arrays,
    shape ``(bins,)``, 0..1 of full scale, bin ``i`` covering ``i * bin_ms`` to
    ``(i + 1) * bin_ms`` on the call's clock; both tracks have the same number of bins."""

    bin_ms: float
    peak: Mapping[str, Floats]
    rms: Mapping[str, Floats]

    @property
    def bins(self) -> int:
        return len(self.peak["caller"])

    def speaking(self, name: str) -> npt.NDArray[np.bool_]:
        """Which bins of track ``name`` hold speech (RMS above :data:`SPEECH_RMS`)."""
        return np.asarray(self.rms[name] > SPEECH_RMS)


def audio_format(fmt: Any) -> tuple[str, int]:
    """``(encoding, sample_rate)`` of an ``AudioFormat`` or a ``{"encoding", "sample_rate"}``
    mapping (a trace manifest's ``caller_format``, ``session.start``'s).

    Raises:
        ValueError: neither shape, or a sample rate that is not a positive whole number.
    """
    if isinstance(fmt, Mapping):
        encoding, rate = fmt.get("encoding"), fmt.get("sample_rate")
    else:
        encoding, rate = getattr(fmt, "encoding", None), getattr(fmt, "sample_rate", None)
    if not isinstance(encoding, str) or isinstance(rate, bool) or not isinstance(rate, int):
        raise ValueError(f"not an audio format (encoding, sample_rate): {fmt!r}")
    if rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {rate}")
    return encoding, rate


def levels_of_records(records: Iterable[Record], fmt: Any, *, bin_ms: float = 20.0) -> Levels:
    """The levels of a tape's two tracks (both in the caller's format ``fmt``, see
    :func:`audio_format`), laid out as heard.

    Raises:
        ValueError: a bad format or audio that cannot be laid out (``track_layout``).
    """
    encoding, rate = audio_format(fmt)
    records = list(records)
    layouts = [
        track_layout(records, kind, rate, encoding)
        for kind in (Kind.CALLER_AUDIO, Kind.AGENT_AUDIO)
    ]
    frames = max(layout.samples for layout in layouts)
    columns = [layout.render(0, frames) for layout in layouts]
    return _levels(columns, rate, bin_ms)


def levels_of_wav(source: WavReader, *, bin_ms: float = 20.0) -> Levels:
    """The levels of a stereo PCM16 WAV (left caller, right agent; a mono file is the
    caller alone), read ``_READ_FRAMES`` sample frames at a time.

    Raises:
        ValueError: not a 44-byte-header PCM16 WAV of one or two channels.
    """
    header = source.read(0, WAV_HEADER_BYTES)
    if len(header) < WAV_HEADER_BYTES or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    _tag, channels, rate, _byte_rate, block, bits = struct.unpack_from("<HHIIHH", header, 20)
    if bits != 16 or channels not in (1, 2) or block != 2 * channels or rate <= 0:
        raise ValueError(f"not PCM16 mono or stereo ({channels} channels, {bits} bits)")
    frames = (source.size - WAV_HEADER_BYTES) // block
    per_bin = max(1, round(bin_ms * rate / 1000))
    step = max(per_bin, _READ_FRAMES // per_bin * per_bin)  # whole bins per read
    peaks: list[list[Floats]] = [[], []]
    rmss: list[list[Floats]] = [[], []]
    for lo in range(0, frames, step):
        hi = min(frames, lo + step)
        raw = source.read(WAV_HEADER_BYTES + lo * block, WAV_HEADER_BYTES + hi * block)
        pcm = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)
        for ch in range(2):
            column = pcm[:, ch] if ch < channels else np.zeros(len(pcm), dtype=np.int16)
            peak, rms = _bins(column, per_bin)
            peaks[ch].append(peak)
            rmss[ch].append(rms)
    return _assemble(peaks, rmss, per_bin * 1000 / rate)


def _levels(columns: list[npt.NDArray[np.int16]], rate: int, bin_ms: float) -> Levels:
    per_bin = max(1, round(bin_ms * rate / 1000))
    peaks: list[list[Floats]] = [[], []]
    rmss: list[list[Floats]] = [[], []]
    for ch, column in enumerate(columns):
        peak, rms = _bins(column, per_bin)
        peaks[ch].append(peak)
        rmss[ch].append(rms)
    return _assemble(peaks, rmss, per_bin * 1000 / rate)


def _bins(column: npt.NDArray[np.int16], per_bin: int) -> tuple[Floats, Floats]:
    """Peak and RMS (0..1) of each ``per_bin`` samples of ``column`` (the last bin padded)."""
    n = -(-len(column) // per_bin)
    padded = np.zeros(n * per_bin, dtype=np.float64)
    padded[: len(column)] = column
    shaped = padded.reshape(n, per_bin) / 32768.0
    return np.abs(shaped).max(axis=1, initial=0.0), np.sqrt((shaped * shaped).mean(axis=1))


def _assemble(peaks: list[list[Floats]], rmss: list[list[Floats]], bin_ms: float) -> Levels:
    empty = np.zeros(0, dtype=np.float64)
    joined_peak = [np.concatenate(p) if p else empty for p in peaks]
    joined_rms = [np.concatenate(r) if r else empty for r in rmss]
    bins = max(len(p) for p in joined_peak)
    fit = [np.pad(a, (0, bins - len(a))) for a in joined_peak]
    fit_rms = [np.pad(a, (0, bins - len(a))) for a in joined_rms]
    return Levels(
        bin_ms,
        dict(zip(TRACK_NAMES, fit, strict=True)),
        dict(zip(TRACK_NAMES, fit_rms, strict=True)),
    )
