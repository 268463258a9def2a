"""Read and write mono WAV files: PCM16, G.711 mu-law and A-law in; PCM16 out.

Pure functions over a path; no state. Python's :mod:`wave` refuses G.711
(format codes 6 and 7), which is how phone audio is usually stored, so the
RIFF chunks are parsed here.

Format: Microsoft RIFF/WAVE ("Multimedia Programming Interface and Data
Specifications 1.0", 1991) with the ``WAVE_FORMAT_EXTENSIBLE`` extension
(Microsoft, "Multiple channel audio data and WAVE files", 2007). Chunks are
word-aligned: a chunk of odd size is followed by one pad byte.

Errors: ``ValueError`` for a file that is not RIFF/WAVE, is truncated, is not
mono, or holds an encoding other than 16-bit PCM, 8-bit mu-law or 8-bit A-law;
the message names what was found. ``OSError`` from the file system passes
through.
"""

from __future__ import annotations

import os
import struct
from typing import Final

import numpy as np

from switchboard.codecs import Pcm16, alaw_decode, pcm16_from_bytes, pcm16_to_bytes, ulaw_decode

__all__ = ["read_wav", "write_wav"]

_FORMAT_PCM: Final = 0x0001
_FORMAT_ALAW: Final = 0x0006
_FORMAT_MULAW: Final = 0x0007
_FORMAT_EXTENSIBLE: Final = 0xFFFE
_FORMAT_NAMES: Final = {
    _FORMAT_PCM: "PCM",
    0x0003: "IEEE float",
    _FORMAT_ALAW: "G.711 A-law",
    _FORMAT_MULAW: "G.711 mu-law",
}
# Bytes 0-1 of a WAVE_FORMAT_EXTENSIBLE SubFormat GUID hold the format code;
# the other 14 bytes are fixed (KSDATAFORMAT_SUBTYPE_* = xxxx0000-0000-0010-8000-00aa00389b71).
_GUID_TAIL: Final = bytes.fromhex("000000001000800000aa00389b71")


def read_wav(path: str | os.PathLike[str]) -> tuple[int, Pcm16]:
    """Read a mono WAV file into PCM16.

    Args:
        path: file to read.

    Returns:
        ``(sample_rate, samples)``: the rate in Hz and an int16 array of shape
        (n,); G.711 samples are expanded to 16-bit linear (ITU-T G.711).

    Raises:
        ValueError: not a RIFF/WAVE file, a missing or truncated ``fmt `` or
            ``data`` chunk, more than one channel, or an encoding other than
            16-bit PCM (format 1), 8-bit A-law (6) or 8-bit mu-law (7), plain
            or inside ``WAVE_FORMAT_EXTENSIBLE``.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 12 or blob[0:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError(f"{os.fspath(path)!r} is not a RIFF/WAVE file")
    fmt: bytes | None = None
    data: bytes | None = None
    pos = 12
    while pos + 8 <= len(blob):
        chunk_id = blob[pos : pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body = blob[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            # A streaming writer may leave the size at 0xFFFFFFFF, and a cut
            # file may end early: either way the data runs to the file's end.
            data = body
            break
        pos += 8 + size + (size & 1)  # pad byte after an odd-sized chunk
    if fmt is None or len(fmt) < 16:
        raise ValueError(f"{os.fspath(path)!r}: missing or truncated 'fmt ' chunk")
    if data is None:
        raise ValueError(f"{os.fspath(path)!r}: no 'data' chunk")
    tag, channels, sample_rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _FORMAT_EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _GUID_TAIL:
            raise ValueError(f"{os.fspath(path)!r}: unknown WAVE_FORMAT_EXTENSIBLE subformat")
        (tag,) = struct.unpack_from("<H", fmt, 24)
    if channels != 1:
        raise ValueError(f"{os.fspath(path)!r}: only mono is supported, got {channels} channels")
    expected_bits = {_FORMAT_PCM: 16, _FORMAT_ALAW: 8, _FORMAT_MULAW: 8}.get(tag)
    if expected_bits is None or bits != expected_bits:
        name = _FORMAT_NAMES.get(tag, f"format 0x{tag:04x}")
        raise ValueError(
            f"{os.fspath(path)!r}: unsupported encoding {name} with {bits} bits per sample; "
            "supported: 16-bit PCM, 8-bit G.711 mu-law, 8-bit G.711 A-law"
        )
    if block_align != bits // 8:
        raise ValueError(f"{os.fspath(path)!r}: block align {block_align} does not match mono")
    if tag == _FORMAT_MULAW:
        return sample_rate, ulaw_decode(data)
    if tag == _FORMAT_ALAW:
        return sample_rate, alaw_decode(data)
    return sample_rate, pcm16_from_bytes(data[: len(data) - len(data) % 2]).copy()


def write_wav(path: str | os.PathLike[str], sample_rate: int, pcm: Pcm16) -> None:
    """Write ``pcm`` as a mono 16-bit PCM WAV file (format 1, 44-byte header).

    Args:
        path: file to create or overwrite.
        sample_rate: in Hz, positive.
        pcm: int16 array, shape (n,).

    Raises:
        TypeError: ``pcm`` is not an int16 numpy array.
        ValueError: ``pcm`` is not one-dimensional, ``sample_rate`` is not
            positive, or the data exceeds the 4 GiB RIFF limit.
        OSError: the file cannot be written.
    """
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise TypeError("pcm must be a numpy int16 array of shape (n,)")
    if pcm.ndim != 1:
        raise ValueError(f"pcm must be mono with shape (n,), got shape {pcm.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
    payload = pcm16_to_bytes(pcm)
    if len(payload) > 0xFFFFFFFF - 36:
        raise ValueError("PCM data too long for a RIFF file (4 GiB limit)")
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(payload),
        b"WAVE",
        b"fmt ",
        16,
        _FORMAT_PCM,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        len(payload),
    )
    with open(path, "wb") as f:
        f.write(header)
        f.write(payload)
        # An odd-sized chunk needs a pad byte; 2 bytes per sample keeps it even.
