"""A recording's tracks as a WAV file, rendered lazily so any byte range costs only itself.

Layout (the rule a player's buffer follows): each audio chunk of a track starts at
``max(its t_ms in samples, the end of the previous chunk)``: a chunk that arrives while
the one before it still plays is queued after it, and a gap between chunks is silence.
An ``AGENT_CLEARED`` record at ``t`` (barge-in: the caller's player dropped what it had
not played) cuts the agent audio laid out at or after ``t``: it was sent, never heard,
and the next chunk starts from ``t``. Sample positions are ``round(t_ms * rate / 1000)``.

The file: RIFF/WAVE with a 44-byte header (Microsoft/IBM "Multimedia Programming
Interface and Data Specifications 1.0", 1991: ``RIFF`` size ``WAVE``, a 16-byte
``fmt `` chunk with format tag 1 = PCM, then the ``data`` chunk), PCM16 little-endian;
one channel for one track, two interleaved for both (left = caller, right = agent).
Chunks are decoded from their wire encoding (``"pcmu"``: G.711 mu-law, ``"pcm16"``) only
for the samples a read covers.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ._g711 import ulaw_decode
from ._pcm import Pcm16, pcm16_from_bytes
from .recording_format import Kind, Record

__all__ = ["WAV_HEADER_BYTES", "TrackLayout", "WavSource", "track_layout"]

WAV_HEADER_BYTES = 44
_BYTES_PER_SAMPLE = {"pcmu": 1, "pcm16": 2}
_MAX_DATA_BYTES = 0xFFFF_FFFF - 36  # the RIFF size field is 32 bits


@dataclass(frozen=True, eq=False)
class TrackLayout:
    """One track laid out on its timeline: chunk ``i`` covers samples
    ``starts[i] .. starts[i] + lengths[i]`` (sorted, never overlapping), its audio the
    first ``lengths[i]`` samples of ``chunks[i]`` (wire bytes in ``encoding``)."""

    sample_rate: int
    encoding: str
    starts: list[int]
    lengths: list[int]
    chunks: list[bytes]
    _ends: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ends = [s + n for s, n in zip(self.starts, self.lengths, strict=True)]
        object.__setattr__(self, "_ends", ends)

    @property
    def samples(self) -> int:
        """The track's length in samples (the end of its last chunk)."""
        return self.starts[-1] + self.lengths[-1] if self.starts else 0

    def render(self, start: int, end: int) -> Pcm16:
        """Samples ``start`` to ``end`` (past the end: silence) as int16, shape
        ``(end - start,)``; decodes only the chunks that overlap the range."""
        out = np.zeros(max(0, end - start), dtype=np.int16)
        ends_after = bisect.bisect_right(self._ends, start)  # first chunk ending past start
        width = _BYTES_PER_SAMPLE[self.encoding]
        for i in range(ends_after, len(self.starts)):
            chunk_start = self.starts[i]
            if chunk_start >= end:
                break
            lo = max(start, chunk_start) - chunk_start
            hi = min(end, chunk_start + self.lengths[i]) - chunk_start
            raw = memoryview(self.chunks[i])[lo * width : hi * width]
            pcm = ulaw_decode(raw) if self.encoding == "pcmu" else pcm16_from_bytes(raw)
            out[chunk_start + lo - start : chunk_start + hi - start] = pcm
        return out


def track_layout(
    records: Iterable[Record], kind: Kind, sample_rate: int, encoding: str
) -> TrackLayout:
    """Lay out the ``kind`` audio records (``CALLER_AUDIO`` or ``AGENT_AUDIO``) of a
    recording by the player's rule (see the module docstring); for the agent track,
    ``AGENT_CLEARED`` records cut what was not yet heard. Other records are skipped.

    Raises:
        ValueError: ``kind`` is not an audio kind, ``encoding`` is not ``"pcmu"`` or
            ``"pcm16"``, ``sample_rate`` is not positive, or a PCM16 chunk has an odd
            number of bytes.
    """
    if kind not in (Kind.CALLER_AUDIO, Kind.AGENT_AUDIO):
        raise ValueError(f"a track is CALLER_AUDIO or AGENT_AUDIO, not {kind.name}")
    width = _BYTES_PER_SAMPLE.get(encoding)
    if width is None:
        raise ValueError(f"cannot decode {encoding!r} audio (known: pcmu, pcm16)")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    starts: list[int] = []
    lengths: list[int] = []
    chunks: list[bytes] = []
    end = 0  # where the player's buffer ends
    for index, record in enumerate(records):
        if record.kind is kind and record.data:
            if len(record.data) % width:
                raise ValueError(
                    f"record {index + 1}: PCM16 audio of {len(record.data)} bytes (odd)"
                )
            at = max(_sample(record.t_ms, sample_rate), end)
            starts.append(at)
            lengths.append(len(record.data) // width)
            chunks.append(record.data)
            end = at + lengths[-1]
        elif record.kind is Kind.AGENT_CLEARED and kind is Kind.AGENT_AUDIO:
            cut = max(_sample(record.t_ms, sample_rate), 0)
            while starts and starts[-1] >= cut:
                starts.pop()
                lengths.pop()
                chunks.pop()
            if starts and starts[-1] + lengths[-1] > cut:
                lengths[-1] = cut - starts[-1]
            end = min(end, cut)
    return TrackLayout(sample_rate, encoding, starts, lengths, chunks)


def _sample(t_ms: float, sample_rate: int) -> int:
    return max(0, round(t_ms * sample_rate / 1000)) if t_ms == t_ms else 0  # NaN: 0


class WavSource:
    """The WAV file of one track (``caller`` or ``agent`` alone: mono) or both (stereo,
    left = caller, right = agent; the shorter track padded with silence).

    ``size`` is the whole file's length in bytes; :meth:`read` renders any byte range
    of it on demand, in time proportional to the range.

    Raises:
        ValueError: no track, the two tracks' sample rates differ, or the file would
            pass the 4 GiB a RIFF size field can hold.
    """

    def __init__(self, caller: TrackLayout | None, agent: TrackLayout | None) -> None:
        self._tracks = [t for t in (caller, agent) if t is not None]
        if not self._tracks:
            raise ValueError("a WAV needs at least one track")
        if caller is not None and agent is not None and caller.sample_rate != agent.sample_rate:
            raise ValueError(
                f"the caller track is {caller.sample_rate} Hz and the agent track "
                f"{agent.sample_rate} Hz: both tracks of a stereo WAV need one sample rate"
            )
        self.sample_rate = self._tracks[0].sample_rate
        self.channels = len(self._tracks)
        self.frames = max(t.samples for t in self._tracks)
        """Sample frames (one sample per channel) in the file."""
        self._block = 2 * self.channels
        data_bytes = self.frames * self._block
        if data_bytes > _MAX_DATA_BYTES:
            raise ValueError(f"{data_bytes} bytes of audio do not fit a WAV file (4 GiB)")
        self.size = WAV_HEADER_BYTES + data_bytes
        """The whole file's length in bytes."""
        self._header = struct.pack(
            "<4sI4s4sIHHIIHH4sI",
            b"RIFF",
            36 + data_bytes,
            b"WAVE",
            b"fmt ",
            16,  # fmt chunk size (PCM)
            1,  # format tag: PCM
            self.channels,
            self.sample_rate,
            self.sample_rate * self._block,  # byte rate
            self._block,  # block align
            16,  # bits per sample
            b"data",
            data_bytes,
        )

    @property
    def duration_ms(self) -> float:
        """The file's length on the call's clock, in ms."""
        return self.frames * 1000 / self.sample_rate

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (end excluded) of the file, as ``file[start:end]``
        would give: a range past the end is cut at :attr:`size`, an empty one is ``b""``.

        Raises:
            ValueError: ``start`` or ``end`` is negative.
        """
        if start < 0 or end < 0:
            raise ValueError(f"a byte range is not negative, got {start}..{end}")
        end = min(end, self.size)
        if start >= end:
            return b""
        out = bytearray()
        if start < WAV_HEADER_BYTES:
            out += self._header[start:end]
        data_lo = max(start, WAV_HEADER_BYTES) - WAV_HEADER_BYTES
        data_hi = end - WAV_HEADER_BYTES
        if data_hi > data_lo:
            frame_lo, frame_hi = data_lo // self._block, -(-data_hi // self._block)
            columns = [t.render(frame_lo, frame_hi) for t in self._tracks]
            frames = columns[0] if len(columns) == 1 else np.column_stack(columns)
            pcm = frames.astype("<i2", copy=False).tobytes()
            skip = data_lo - frame_lo * self._block
            out += pcm[skip : skip + data_hi - data_lo]
        return bytes(out)

    def iter_range(self, start: int, end: int, chunk_bytes: int = 64 * 1024) -> Iterator[bytes]:
        """:meth:`read` of ``start..end`` in pieces of at most ``chunk_bytes`` (to stream
        a response without holding it whole)."""
        end = min(end, self.size)
        for lo in range(start, end, chunk_bytes):
            yield self.read(lo, min(lo + chunk_bytes, end))
