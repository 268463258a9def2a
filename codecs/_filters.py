"""Design of the polyphase low-pass filters behind :class:`Resampler`.

A rational rate change ``dst/src = L/M`` is, in principle: insert ``L - 1``
zeros between input samples, low-pass at the lower of the two Nyquist
frequencies, keep every ``M``-th sample (Crochiere and Rabiner, *Multirate
Digital Signal Processing*, 1983, ch. 4). The prototype low-pass here is a
Kaiser-windowed sinc (Kaiser, 1974; the length and beta formulas are those
of Oppenheim and Schafer, *Discrete-Time Signal Processing*, 3rd ed.,
eq. 7.62-7.63):

- passband up to 0.85 of the lower Nyquist frequency (3.4 kHz when one side
  is 8 kHz: the telephone band), flat to within the stopband ripple;
- stopband from the lower Nyquist frequency on, attenuated by
  ``STOPBAND_ATTENUATION_DB``;
- linear phase, so the delay is the same for every frequency: half the
  filter's span, 3.7 ms for pairs involving 8 kHz and less for the others.

The transition band is what sets the delay: [0.85, 1.0] of the lower
Nyquist frequency is as narrow as a 5 ms latency budget allows at 8 kHz.

:func:`design` lays the prototype out as a ``(K + M - 1, L)`` matrix ``G``:
for each block of ``M`` input samples, the window of the ``K + M - 1`` input
samples ending at the block's last sample, times ``G``, gives the block's
``L`` output samples. One matrix product then resamples a whole chunk.

Blocks are made ``S`` times longer than ``L/M`` in lowest terms (``S*L``
outputs from ``S*M`` inputs) so that consecutive windows overlap less: the
windows are copied once for the matrix product, and with ``S*M`` near
``K/8`` that copy shrinks about eightfold for a few more multiplications.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PASSBAND_EDGE = 0.85
"""Passband edge, as a fraction of the lower Nyquist frequency."""
STOPBAND_EDGE = 1.0
"""Stopband edge, as a fraction of the lower Nyquist frequency."""
STOPBAND_ATTENUATION_DB = 72.0
"""Stopband attenuation (dB) the Kaiser window is designed for; the passband ripple follows."""


@dataclass(frozen=True)
class PolyphaseFilter:
    """A prototype low-pass split into the ``L`` phases of an ``L/M`` rate change.

    Attributes:
        block_out: output samples per block (a multiple of dst_rate / gcd).
        block_in: input samples per block, in the same ratio.
        taps: K, filter taps per output sample (the span in input samples).
        matrix: G, float32 array of shape (K + block_in - 1, block_out); row i
            weighs the input sample ``i - (K - 1)`` places from a block's first.
        group_delay: delay of every frequency through the filter, in input samples.
    """

    block_out: int
    block_in: int
    taps: int
    matrix: npt.NDArray[np.float32]
    group_delay: float


@functools.cache
def design(src_rate: int, dst_rate: int) -> PolyphaseFilter:
    """Design the polyphase filter for ``src_rate`` -> ``dst_rate`` (Hz, distinct).

    Cached: every resampler for the same pair shares one read-only matrix.
    """
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    fs_up = float(src_rate * up)  # rate of the zero-stuffed signal (Hz)
    nyquist_low = min(src_rate, dst_rate) / 2.0
    f_pass = PASSBAND_EDGE * nyquist_low
    f_stop = STOPBAND_EDGE * nyquist_low
    attenuation = STOPBAND_ATTENUATION_DB
    beta = 0.1102 * (attenuation - 8.7)
    transition = 2.0 * math.pi * (f_stop - f_pass) / fs_up  # rad/sample at fs_up
    length = math.ceil((attenuation - 8.0) / (2.285 * transition)) + 1
    taps = math.ceil(length / up)
    length = taps * up

    centre = (length - 1) / 2.0
    cutoff = (f_pass + f_stop) / 2.0 / fs_up  # cycles per sample at fs_up
    n = np.arange(length) - centre
    prototype = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.kaiser(length, beta)
    prototype *= up / prototype.sum()  # unit DC gain after zero-stuffing by `up`

    # Output r of a block reads input (block start + offset_r - j) with
    # coefficient prototype[phase_r + j * up], j = 0..taps-1.
    s = max(1, round(taps / (8 * down)))
    matrix = np.zeros((taps + s * down - 1, s * up), dtype=np.float64)
    j = np.arange(taps)
    for r in range(s * up):
        phase, offset = (r * down) % up, (r * down) // up
        matrix[taps - 1 + offset - j, r] = prototype[phase + j * up]
    frozen = matrix.astype(np.float32)
    frozen.setflags(write=False)
    return PolyphaseFilter(s * up, s * down, taps, frozen, centre / up)
