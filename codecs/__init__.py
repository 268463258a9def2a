"""Audio codecs: G.711, PCM16 byte order, and streaming sample-rate conversion.

Pure code: bytes and numpy arrays in, bytes and numpy arrays out; no I/O, no
clocks, no Trio. Audio in memory is mono PCM16: a numpy ``int16`` array of
shape ``(n,)``.

- :func:`ulaw_decode`, :func:`ulaw_encode`, :func:`alaw_decode`,
  :func:`alaw_encode`: ITU-T G.711, bit-exact with CPython's ``audioop``.
- :func:`pcm16_from_bytes`, :func:`pcm16_to_bytes`: little-endian PCM16.
- :class:`Resampler`: any pair of :data:`SUPPORTED_RATES`, streaming,
  at most 3.75 ms of delay.

Errors: ``TypeError`` for a wrong type or dtype, ``ValueError`` for a wrong
shape, an odd byte count or an unsupported rate; each names what was expected.
"""

from ._g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from ._pcm import Pcm16, pcm16_from_bytes, pcm16_to_bytes
from ._resampler import SUPPORTED_RATES, Resampler

__all__ = [
    "SUPPORTED_RATES",
    "Pcm16",
    "Resampler",
    "alaw_decode",
    "alaw_encode",
    "pcm16_from_bytes",
    "pcm16_to_bytes",
    "ulaw_decode",
    "ulaw_encode",
]
