"""G.711 mu-law and A-law, bit-exact with CPython's ``audioop``.

Source: ITU-T Recommendation G.711 (11/88), in the form of the Sun
Microsystems reference code that CPython's ``Modules/audioop.c`` carries
(``st_14linear2ulaw``, ``st_linear2alaw`` and their inverses): a 16-bit sample
is reduced to 14 bits (mu-law) or 13 bits (A-law) by an arithmetic shift,
then companded. One byte per sample, 8000 samples per second on telephone
lines; Twilio Media Streams carry mu-law.

Both directions run as table look-ups built once at import: 256 entries to
decode, 65536 (one per int16 value) to encode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._pcm import Pcm16, check_bytes, check_pcm16

_ULAW_BIAS = 0x84  # 132: the bias added before the segment search (16-bit scale)
_ULAW_CLIP = 8159  # largest 14-bit magnitude mu-law can code, after the >> 2
_SEG_ULAW_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_SEG_ALAW_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _ulaw_decode_table() -> Pcm16:
    u: Any = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    table: Pcm16 = np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)
    return table


def _alaw_decode_table() -> Pcm16:
    a: Any = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    table: Pcm16 = np.where(a & 0x80, t, -t).astype(np.int16)
    return table


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm: Any = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg: Any = np.searchsorted(_SEG_ULAW_END, mag, side="left")  # first end >= mag
    code = np.where(
        seg >= 8,
        0x7F,
        (seg << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F),
    )
    return _by_uint16_index(code ^ mask)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm: Any = np.arange(-32768, 32768, dtype=np.int32) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg: Any = np.searchsorted(_SEG_ALAW_END, mag, side="left")
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> shift) & 0x0F))
    return _by_uint16_index(code ^ mask)


def _by_uint16_index(codes_from_min: Any) -> npt.NDArray[np.uint8]:
    """Reorder a table indexed by value + 32768 into one indexed by the value's uint16 bits."""
    return np.roll(codes_from_min.astype(np.uint8), -32768)


_ULAW_TO_PCM16 = _ulaw_decode_table()
_ALAW_TO_PCM16 = _alaw_decode_table()
_PCM16_TO_ULAW = _ulaw_encode_table()
_PCM16_TO_ALAW = _alaw_encode_table()
for _table in (_ULAW_TO_PCM16, _ALAW_TO_PCM16, _PCM16_TO_ULAW, _PCM16_TO_ALAW):
    _table.setflags(write=False)


_INT16 = np.dtype(np.int16)


def _as_buffer(data: bytes | bytearray | memoryview) -> bytes | memoryview:
    return data if type(data) is bytes else check_bytes(data)


def _as_uint16(pcm: Pcm16) -> npt.NDArray[np.uint16]:
    """The int16 samples' bits as uint16: the encode tables' index."""
    if type(pcm) is not np.ndarray or pcm.dtype is not _INT16 or pcm.ndim != 1:
        check_pcm16(pcm)  # raises unless it is an int16 subclass
    return pcm.view(np.uint16)


def ulaw_decode(data: bytes | bytearray | memoryview) -> Pcm16:
    """Decode G.711 mu-law bytes to PCM16: int16 array, shape (len(data),).

    Matches ``audioop.ulaw2lin(data, 2)`` for every code.

    Raises:
        TypeError: ``data`` is not bytes-like.
    """
    return _ULAW_TO_PCM16.take(np.frombuffer(_as_buffer(data), dtype=np.uint8))


def ulaw_encode(pcm: Pcm16) -> bytes:
    """Encode PCM16 (int16 array, shape (n,)) as n bytes of G.711 mu-law.

    Matches ``audioop.lin2ulaw(pcm_bytes, 2)`` for every int16 value.

    Raises:
        TypeError: ``pcm`` is not an int16 numpy array.
        ValueError: ``pcm`` is not one-dimensional.
    """
    return _PCM16_TO_ULAW.take(_as_uint16(pcm)).tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> Pcm16:
    """Decode G.711 A-law bytes to PCM16: int16 array, shape (len(data),).

    Matches ``audioop.alaw2lin(data, 2)`` for every code.

    Raises:
        TypeError: ``data`` is not bytes-like.
    """
    return _ALAW_TO_PCM16.take(np.frombuffer(_as_buffer(data), dtype=np.uint8))


def alaw_encode(pcm: Pcm16) -> bytes:
    """Encode PCM16 (int16 array, shape (n,)) as n bytes of G.711 A-law.

    Matches ``audioop.lin2alaw(pcm_bytes, 2)`` for every int16 value.

    Raises:
        TypeError: ``pcm`` is not an int16 numpy array.
        ValueError: ``pcm`` is not one-dimensional.
    """
    return _PCM16_TO_ALAW.take(_as_uint16(pcm)).tobytes()
