"""PCM16 conversions and the input checks every codec shares.

PCM16 here is signed 16-bit linear PCM, little-endian on the wire (the byte
order of WAV files, Twilio, OpenAI Realtime and Gemini Live), mono, held in
memory as a native ``numpy.int16`` array of shape ``(n,)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Pcm16 = npt.NDArray[np.int16]
"""Type of a mono PCM16 buffer: int16 array, shape (n,)."""

_WIRE_DTYPE = np.dtype("<i2")


def check_pcm16(pcm: Any, what: str = "pcm") -> Pcm16:
    """Return ``pcm`` if it is a 1-D int16 numpy array, else raise.

    Raises:
        TypeError: ``pcm`` is not a numpy array, or its dtype is not int16.
        ValueError: ``pcm`` is not one-dimensional (mono, shape (n,)).
    """
    if not isinstance(pcm, np.ndarray):
        raise TypeError(
            f"{what} must be a numpy int16 array of shape (n,), got {type(pcm).__name__}"
            + (
                " (use pcm16_from_bytes for raw bytes)"
                if isinstance(pcm, (bytes, bytearray))
                else ""
            )
        )
    if pcm.dtype != np.int16:
        raise TypeError(f"{what} must have dtype int16 (PCM16), got {pcm.dtype}")
    if pcm.ndim != 1:
        raise ValueError(f"{what} must be mono with shape (n,), got shape {pcm.shape}")
    return pcm


def check_bytes(data: Any, what: str = "data") -> memoryview:
    """Return a flat byte view of ``data`` (bytes, bytearray or memoryview).

    Raises:
        TypeError: ``data`` is not a bytes-like object.
    """
    if isinstance(data, (bytes, bytearray)):
        return memoryview(data)
    if isinstance(data, memoryview):
        return data.cast("B") if data.format != "B" or data.ndim != 1 else data
    raise TypeError(f"{what} must be bytes, bytearray or memoryview, got {type(data).__name__}")


def pcm16_from_bytes(data: bytes | bytearray | memoryview) -> Pcm16:
    """Decode little-endian PCM16 bytes into an int16 array of shape (len(data) // 2,).

    For ``bytes`` input the result is a read-only view (no copy); copy it to
    modify it. Byte order is little-endian whatever the host's.

    Raises:
        TypeError: ``data`` is not bytes-like.
        ValueError: ``data`` has an odd number of bytes (PCM16 has 2 per sample).
    """
    view = check_bytes(data)
    if len(view) % 2:
        raise ValueError(
            f"PCM16 data must have an even number of bytes (2 per sample), got {len(view)}"
        )
    pcm = np.frombuffer(view, dtype=_WIRE_DTYPE)
    if pcm.dtype != np.int16:  # big-endian host: convert to native order
        pcm = pcm.astype(np.int16)
    return pcm


def pcm16_to_bytes(pcm: Pcm16) -> bytes:
    """Encode an int16 array of shape (n,) as 2n bytes of little-endian PCM16.

    Raises:
        TypeError: ``pcm`` is not an int16 numpy array.
        ValueError: ``pcm`` is not one-dimensional.
    """
    check_pcm16(pcm)
    return pcm.astype(_WIRE_DTYPE, copy=False).tobytes()
