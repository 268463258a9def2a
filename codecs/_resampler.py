"""Streaming sample-rate conversion with a few milliseconds of delay and no bursts."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from ._filters import PolyphaseFilter, design
from ._pcm import Pcm16, check_pcm16

SUPPORTED_RATES: Final = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
"""Sample rates (Hz) :class:`Resampler` converts between, in any pair."""

# The clip ufunc itself: np.clip's Python wrapper costs more than the
# clipping of a 20 ms frame.
_clip: np.ufunc = (getattr(np, "_core", None) or np.core).umath.clip

_INT16: Final = np.dtype(np.int16)


class Resampler:
    """Convert a mono PCM16 stream from ``src_rate`` to ``dst_rate`` as it arrives.

    Feed chunks of any length to :meth:`process`; each call returns every
    output sample its input makes computable, so ``n`` input samples give
    ``n * dst_rate / src_rate`` output samples, give or take one (the
    remainder is carried, never saved up into a burst). The output is the
    input band-limited to 0.85 of the lower Nyquist frequency and delayed by
    :attr:`group_delay_ms` (3.75 ms at most, for pairs involving 8 kHz).
    Call :meth:`flush` at the end of the stream for the last
    ``group_delay_ms`` of output; the resampler is then ready for a new stream.

    Splitting a stream differently gives the same output, to within one
    least significant bit. Results are rounded to the nearest integer and
    clipped to the int16 range, never wrapped.

    Args:
        src_rate: input sample rate in Hz, one of :data:`SUPPORTED_RATES`.
        dst_rate: output sample rate in Hz, one of :data:`SUPPORTED_RATES`.

    Raises:
        TypeError: a rate is not an int.
        ValueError: a rate is not supported.

    The filter design is described in ``switchboard.codecs._filters``.
    """

    __slots__ = (
        "_block_in",
        "_block_out",
        "_buf",
        "_emitted",
        "_fill",
        "_filter",
        "_matrix",
        "_origin",
        "_received",
        "_taps",
        "dst_rate",
        "src_rate",
    )

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        for name, rate in (("src_rate", src_rate), ("dst_rate", dst_rate)):
            if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool):
                raise TypeError(f"{name} must be an int in Hz, got {type(rate).__name__}")
            if rate not in SUPPORTED_RATES:
                raise ValueError(
                    f"{name}={rate} Hz is not supported; supported rates: "
                    + ", ".join(str(r) for r in SUPPORTED_RATES)
                )
        self.src_rate: Final = int(src_rate)
        self.dst_rate: Final = int(dst_rate)
        self._filter: PolyphaseFilter | None = None
        self._block_out = self._block_in = self._taps = 1
        if src_rate != dst_rate:
            f = self._filter = design(self.src_rate, self.dst_rate)
            self._block_out, self._block_in, self._taps, self._matrix = (
                f.block_out,
                f.block_in,
                f.taps,
                f.matrix,
            )
        self._reset()

    def __repr__(self) -> str:
        return f"Resampler({self.src_rate}, {self.dst_rate})"

    @property
    def group_delay_ms(self) -> float:
        """Delay (ms) between an input sample and its place in the output."""
        if self._filter is None:
            return 0.0
        return 1000.0 * self._filter.group_delay / self.src_rate

    def _reset(self) -> None:
        taps = self._taps
        # _buf[i] holds input sample number _origin + i; the taps - 1 samples
        # before the stream's start are silence.
        self._buf: npt.NDArray[np.float32] = np.zeros(4096 + 2 * taps, dtype=np.float32)
        self._origin = -(taps - 1)
        self._fill = taps - 1
        self._received = 0  # input samples taken since the stream began
        self._emitted = 0  # output samples returned since the stream began

    def process(self, pcm: Pcm16) -> Pcm16:
        """Take the next chunk of input; return the output it completes.

        Args:
            pcm: int16 array, shape (n,), any n >= 0, at ``src_rate``.

        Returns:
            int16 array, shape (m,), at ``dst_rate``, with
            ``m`` = ``n * dst_rate / src_rate`` rounded up or down.

        Raises:
            TypeError: ``pcm`` is not an int16 numpy array.
            ValueError: ``pcm`` is not one-dimensional.
        """
        if type(pcm) is not np.ndarray or pcm.dtype is not _INT16 or pcm.ndim != 1:
            check_pcm16(pcm)  # the slow path: raises, or passes an int16 subclass
        if self._block_out == 1 and self._block_in == 1:  # identity
            return pcm.copy()
        return self._convert(pcm)

    def flush(self) -> Pcm16:
        """End the stream: return the output still held back by the filter's delay.

        Afterwards the resampler starts a new stream from silence.

        Returns:
            int16 array, shape (m,), at ``dst_rate``: about
            ``group_delay_ms`` of output, or nothing if no input was given.
        """
        tail = np.zeros(0, dtype=np.int16)
        if self._filter is not None and self._received:
            tail = self._convert(np.zeros(math.ceil(self._filter.group_delay), dtype=np.int16))
        self._reset()
        return tail

    def _convert(self, pcm: Pcm16) -> Pcm16:
        block_out, block_in, taps = self._block_out, self._block_in, self._taps

        # Append the chunk to the input history (as float32).
        n, fill, buf = pcm.shape[0], self._fill, self._buf
        if fill + n + block_in + taps > buf.shape[0]:
            self._make_room(n)
            fill, buf = self._fill, self._buf
        buf[fill : fill + n] = pcm
        fill += n
        received = self._received + n
        self._fill, self._received = fill, received

        # Every output whose newest input has arrived: output k reads inputs up
        # to k * src / dst, so k < received * dst / src.
        start, end = self._emitted, -(-received * block_out // block_in)
        if end <= start:
            return np.zeros(0, dtype=np.int16)
        first_block = start // block_out
        blocks = (end - 1) // block_out - first_block + 1
        width = taps + block_in - 1
        # A partial last block's window runs past the input received: those
        # slots hold stale samples, which every output returned weighs zero.
        lo = first_block * block_in - (taps - 1) - self._origin
        windows = np.ndarray((blocks, width), np.float32, buf, lo * 4, (block_in * 4, 4))
        out = np.dot(windows, self._matrix).reshape(-1)
        skip = start - first_block * block_out
        if skip or out.shape[0] != end - start:
            out = out[skip : skip + end - start]
        _clip(out, -32768.0, 32767.0, out=out)
        result = np.empty(end - start, dtype=np.int16)
        np.rint(out, out=result, casting="unsafe")
        self._emitted = end
        return result

    def _make_room(self, n: int) -> None:
        """Drop input no future output reads; grow the buffer if ``n`` more still won't fit."""
        first_needed = (self._emitted // self._block_out) * self._block_in - (self._taps - 1)
        drop = first_needed - self._origin
        if drop > 0:
            kept = self._fill - drop
            self._buf[:kept] = self._buf[drop : self._fill]
            self._origin, self._fill = first_needed, kept
        need = self._fill + n + self._block_in + self._taps
        if need > self._buf.shape[0]:
            grown = np.zeros(2 * need, dtype=np.float32)
            grown[: self._fill] = self._buf[: self._fill]
            self._buf = grown
