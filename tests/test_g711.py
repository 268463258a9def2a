"""G.711 against CPython's audioop, the reference the issue names (ITU-T G.711)."""

import audioop

import numpy as np
import pytest

from switchboard.codecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ALL_CODES = bytes(range(256))
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def test_ulaw_decode_matches_audioop_for_every_code() -> None:
    assert ulaw_decode(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)


def test_alaw_decode_matches_audioop_for_every_code() -> None:
    assert alaw_decode(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_ulaw_encode_matches_audioop_for_every_int16_value() -> None:
    assert ulaw_encode(ALL_INT16) == audioop.lin2ulaw(ALL_INT16.tobytes(), 2)


def test_alaw_encode_matches_audioop_for_every_int16_value() -> None:
    assert alaw_encode(ALL_INT16) == audioop.lin2alaw(ALL_INT16.tobytes(), 2)


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_decoded_codes_encode_back_to_themselves(encode, decode) -> None:  # type: ignore[no-untyped-def]
    again = encode(decode(ALL_CODES))
    # mu-law has two codes for zero (0x7F, 0xFF); every other code is its own.
    differing = [c for c in range(256) if again[c] != c]
    assert differing in ([], [0x7F])


def test_a_twilio_frame_decodes_to_160_samples_and_back() -> None:
    frame = bytes(np.random.default_rng(0).integers(0, 256, 160, dtype=np.uint8))
    pcm = ulaw_decode(frame)
    assert pcm.dtype == np.int16 and pcm.shape == (160,)
    assert ulaw_encode(pcm) == frame.replace(b"\x7f", b"\xff")


@pytest.mark.parametrize("decode", [ulaw_decode, alaw_decode])
def test_decode_takes_any_bytes_like(decode) -> None:  # type: ignore[no-untyped-def]
    expected = decode(b"\x01\x80\xff")
    assert np.array_equal(decode(bytearray(b"\x01\x80\xff")), expected)
    assert np.array_equal(decode(memoryview(b"\x01\x80\xff")), expected)
    assert decode(b"").shape == (0,)


@pytest.mark.parametrize("decode", [ulaw_decode, alaw_decode])
def test_decode_rejects_non_bytes(decode) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="bytes"):
        decode("ff")
    with pytest.raises(TypeError, match="bytes"):
        decode(np.zeros(4, dtype=np.uint8))


@pytest.mark.parametrize("encode", [ulaw_encode, alaw_encode])
def test_encode_rejects_what_is_not_mono_int16(encode) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="int16"):
        encode(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="int16"):
        encode(np.zeros(4, dtype=np.int32))
    with pytest.raises(TypeError, match="int16"):
        encode(np.zeros(4, dtype=">i2"))  # byte-swapped: would encode wrong values
    with pytest.raises(TypeError, match="pcm16_from_bytes"):
        encode(b"\x00\x00")
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        encode(np.zeros((2, 160), dtype=np.int16))
