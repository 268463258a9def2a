"""eSpeak NG synthesis (actors/local/tts.py) and WAV files (actors/local/wavfile.py)."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.actors.local import tts
from switchboard.actors.local.wavfile import read_wav, write_wav
from switchboard.codecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

DATA = Path(__file__).parent / "data" / "speech"


def level_db(pcm: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(pcm.astype(np.float64) ** 2) + 1.0))


# -- synthesis -----------------------------------------------------------------


def test_a_sentence_lasts_as_long_as_it_is_spoken_and_is_loud() -> None:
    text = "Thanks for calling Bright Smile Dental. How can I help you today?"
    pcm = tts.synthesize(text, rate_wpm=165)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    seconds = pcm.shape[0] / tts.SAMPLE_RATE
    words = len(text.split())
    # 165 words a minute is 2.75 words a second; allow for the pause at the full stop.
    assert words / 2.75 * 0.7 < seconds < words / 2.75 * 1.5, seconds
    assert level_db(pcm) > 60  # about -27 dBFS or louder, not a whisper


def test_a_faster_rate_gives_shorter_speech() -> None:
    slow = tts.synthesize("I would like to book an appointment", rate_wpm=120)
    fast = tts.synthesize("I would like to book an appointment", rate_wpm=240)
    assert fast.shape[0] < 0.7 * slow.shape[0]


def test_silence_at_either_end_is_trimmed_to_30_ms() -> None:
    pcm = tts.synthesize("hello")
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 8)
    keep = round(0.030 * tts.SAMPLE_RATE)
    assert loud[0] <= keep
    assert pcm.shape[0] - 1 - loud[-1] <= keep


def test_the_same_text_gives_the_same_samples() -> None:
    first = tts.synthesize("what are your opening hours")
    tts.synthesize("something else in between, to move the synthesizer's state on")
    again = tts.synthesize("what are your opening hours")
    np.testing.assert_array_equal(first, again)


def test_two_threads_at_once_get_what_one_thread_gets() -> None:
    texts = ["thank you goodbye", "this is an emergency"]
    alone = [tts.synthesize(t) for t in texts]
    together: list[np.ndarray | None] = [None, None]
    barrier = threading.Barrier(2)

    def speak(i: int) -> None:
        barrier.wait()
        for _ in range(3):
            together[i] = tts.synthesize(texts[i])

    threads = [threading.Thread(target=speak, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for mine, theirs in zip(alone, together, strict=True):
        assert theirs is not None
        np.testing.assert_array_equal(mine, theirs)


def test_phone_audio_is_8_khz_mu_law_of_the_same_speech() -> None:
    wide = tts.synthesize("can I talk to a human please", rate_wpm=150)
    ulaw = tts.synthesize_ulaw("can I talk to a human please", rate_wpm=150)
    assert isinstance(ulaw, bytes)
    assert abs(len(ulaw) / 8000 - wide.shape[0] / tts.SAMPLE_RATE) < 0.01
    assert level_db(ulaw_decode(ulaw)) > 60


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_any_supported_rate(rate: int) -> None:
    pcm = tts.synthesize_at("operator", rate)
    wide = tts.synthesize("operator")
    assert abs(pcm.shape[0] / rate - wide.shape[0] / tts.SAMPLE_RATE) < 0.01


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        tts.synthesize(text)


def test_an_unknown_voice_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="no-such-voice"):
        tts.synthesize("hello", voice="no-such-voice")
    assert tts.synthesize("hello").shape[0] > 0  # and the next call still works


@pytest.mark.parametrize("rate", [0, 79, 451])
def test_a_rate_out_of_range_is_refused(rate: int) -> None:
    with pytest.raises(ValueError, match="rate_wpm"):
        tts.synthesize("hello", rate_wpm=rate)


def test_an_unsupported_output_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="12345"):
        tts.synthesize_at("hello", 12345)


def test_a_failing_library_is_a_runtime_error_saying_what_it_returned(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Without its data, espeak_Initialize fails: it returns 0 instead of the rate.
    monkeypatch.setattr(tts.espeakng_loader, "get_data_path", lambda: str(tmp_path))
    with pytest.raises(RuntimeError, match=r"espeak_Initialize returned 0, not the sample rate"):
        tts.synthesize("hello")
    monkeypatch.undo()
    assert tts.synthesize("hello").shape[0] > 0  # a later call loads it afresh and works


# -- WAV files -------------------------------------------------------------------


def test_reads_the_mu_law_caller_lines() -> None:
    rate, pcm = read_wav(DATA / "synthetic" / "bye.wav")
    assert rate == 8000
    assert pcm.dtype == np.int16 and pcm.shape == (13470,)
    raw = (DATA / "synthetic" / "bye.wav").read_bytes()
    data = raw.index(b"data") + 8
    np.testing.assert_array_equal(pcm, ulaw_decode(raw[data : data + 13470]))


def test_reads_pcm16_recordings() -> None:
    rate, pcm = read_wav(DATA / "recorded" / "goforward.wav")
    assert rate == 16000 and pcm.shape == (44580,)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(-32768, 32767), max_size=300),
    st.sampled_from([8000, 16000, 22050, 48000]),
)
def test_what_is_written_reads_back(
    tmp_path_factory: pytest.TempPathFactory, samples: list[int], rate: int
) -> None:
    path = tmp_path_factory.mktemp("wav") / "x.wav"
    pcm = np.array(samples, dtype=np.int16)
    write_wav(path, rate, pcm)
    back_rate, back = read_wav(path)
    assert back_rate == rate
    np.testing.assert_array_equal(back, pcm)


def _riff(fmt: bytes, data: bytes, extra: bytes = b"") -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + (b"\0" if len(fmt) % 2 else b"")
    chunks += extra + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_padded_chunks_alaw_and_extensible_pcm(tmp_path: Path) -> None:
    pcm = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16)
    # An odd-sized chunk before the data, followed by its pad byte.
    odd = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\0"
    fmt_pcm = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    (tmp_path / "odd.wav").write_bytes(_riff(fmt_pcm, pcm.tobytes(), odd))
    assert np.array_equal(read_wav(tmp_path / "odd.wav")[1], pcm)
    # WAVE_FORMAT_EXTENSIBLE with the PCM subformat.
    guid = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    ext = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 32000, 2, 16, 22, 16, 4) + guid
    (tmp_path / "ext.wav").write_bytes(_riff(ext, pcm.tobytes()))
    assert read_wav(tmp_path / "ext.wav")[0] == 16000
    # A-law (format 6).
    fmt_alaw = struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8)
    (tmp_path / "a.wav").write_bytes(_riff(fmt_alaw, alaw_encode(pcm)))
    assert np.array_equal(read_wav(tmp_path / "a.wav")[1], alaw_decode(alaw_encode(pcm)))
    # mu-law (format 7) written the same way.
    fmt_ulaw = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    (tmp_path / "u.wav").write_bytes(_riff(fmt_ulaw, ulaw_encode(pcm)))
    assert np.array_equal(read_wav(tmp_path / "u.wav")[1], ulaw_decode(ulaw_encode(pcm)))


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"not a wav file at all", "not a RIFF/WAVE"),
        (_riff(struct.pack("<HHIIHH", 1, 2, 8000, 32000, 4, 16), b"\0" * 8), "mono"),
        (_riff(struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32), b"\0" * 8), "IEEE float"),
        (_riff(struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8), b"\0" * 8), "8 bits"),
        (b"RIFF\x04\x00\x00\x00WAVE", "fmt"),
    ],
)
def test_unsupported_files_are_clear_value_errors(
    tmp_path: Path, blob: bytes, message: str
) -> None:
    (tmp_path / "bad.wav").write_bytes(blob)
    with pytest.raises(ValueError, match=message):
        read_wav(tmp_path / "bad.wav")


def test_writing_refuses_stereo_and_bad_rates(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mono"):
        write_wav(tmp_path / "x.wav", 8000, np.zeros((2, 10), dtype=np.int16))
    with pytest.raises(ValueError, match="sample_rate"):
        write_wav(tmp_path / "x.wav", 0, np.zeros(10, dtype=np.int16))
    with pytest.raises(TypeError, match="int16"):
        write_wav(tmp_path / "x.wav", 8000, np.zeros(10, dtype=np.float32))  # type: ignore[arg-type]
