"""PCM16 byte order and the errors around it."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.codecs import pcm16_from_bytes, pcm16_to_bytes


def test_bytes_are_little_endian() -> None:
    assert pcm16_from_bytes(b"\x01\x00\x00\x80\xff\x7f").tolist() == [1, -32768, 32767]
    assert (
        pcm16_to_bytes(np.array([1, -32768, 32767], dtype=np.int16)) == b"\x01\x00\x00\x80\xff\x7f"
    )


@given(st.binary(max_size=400).filter(lambda b: len(b) % 2 == 0))
def test_round_trip(data: bytes) -> None:
    pcm = pcm16_from_bytes(data)
    assert pcm.dtype == np.int16 and pcm.shape == (len(data) // 2,)
    assert pcm16_to_bytes(pcm) == data


def test_odd_byte_count_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"even number of bytes.*got 161"):
        pcm16_from_bytes(bytes(161))


def test_from_bytes_is_a_read_only_view_and_says_so() -> None:
    pcm = pcm16_from_bytes(bytes(4))
    with pytest.raises(ValueError, match="read-only"):
        pcm[0] = 1
    assert pcm16_from_bytes(bytearray(4)).shape == (2,)


def test_to_bytes_rejects_other_dtypes_and_shapes() -> None:
    with pytest.raises(TypeError, match="int16"):
        pcm16_to_bytes(np.zeros(3, dtype=np.float64))
    with pytest.raises(TypeError, match="numpy int16 array"):
        pcm16_to_bytes([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mono"):
        pcm16_to_bytes(np.zeros((3, 2), dtype=np.int16))
