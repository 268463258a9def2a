"""Streaming resampling: what a listener and a call's timing would notice."""

import itertools

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from switchboard.codecs import SUPPORTED_RATES, Resampler
from switchboard.codecs._latency import playout_lag_ms

PAIRS = list(itertools.permutations(SUPPORTED_RATES, 2))
DOWN_PAIRS = [(s, d) for s, d in PAIRS if d < s]
Signal = npt.NDArray[np.int16]


def stream(rs: Resampler, x: Signal, chunk: int) -> Signal:
    """Feed ``x`` in chunks of ``chunk`` samples, then flush; return all output."""
    out = [rs.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    out.append(rs.flush())
    return np.concatenate(out)


@settings(max_examples=300, deadline=None)
@given(
    pair=st.sampled_from([*PAIRS, (8000, 8000), (48000, 48000)]),
    signal=arrays(np.int16, st.integers(0, 3000)),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
)
def test_any_chunking_gives_the_one_call_output(
    pair: tuple[int, int], signal: Signal, cuts: list[int]
) -> None:
    whole = Resampler(*pair)
    expected = np.concatenate([whole.process(signal), whole.flush()])

    rs = Resampler(*pair)
    bounds = sorted(min(c, len(signal)) for c in cuts)  # repeats give empty chunks
    pieces = np.split(signal, bounds)
    got = np.concatenate([*(rs.process(p) for p in pieces), rs.flush()])

    assert got.shape == expected.shape
    assert np.abs(got.astype(np.int32) - expected).max(initial=0) <= 1


@settings(max_examples=100, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    sizes=st.lists(st.integers(0, 5000), min_size=2, max_size=20),
)
def test_no_bursts_each_call_returns_its_share(pair: tuple[int, int], sizes: list[int]) -> None:
    src, dst = pair
    rs = Resampler(src, dst)
    rng = np.random.default_rng(len(sizes))
    for n in sizes:
        out = rs.process(rng.integers(-3000, 3000, n, dtype=np.int16))
        assert abs(len(out) - n * dst / src) <= 1


def test_output_length_is_input_duration_plus_delay() -> None:
    rs = Resampler(8000, 24000)
    out = stream(rs, np.zeros(8000, dtype=np.int16), 160)
    expected = (1.0 + rs.group_delay_ms / 1000) * 24000
    assert expected <= len(out) <= expected + 3


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_a_click_fed_in_20_ms_chunks_is_heard_within_5_ms(src: int, dst: int) -> None:
    rs = Resampler(src, dst)
    lag_ms = playout_lag_ms(rs.process, src, dst)
    assert 0 <= lag_ms <= 5.0
    assert abs(lag_ms - rs.group_delay_ms) <= 1000 / dst + 1000 / src


def test_latency_measure_counts_audio_held_back() -> None:
    held: list[Signal] = []

    def hold_one_chunk(pcm: Signal) -> Signal:  # a converter that bursts late
        held.append(pcm)
        return held.pop(0) if len(held) > 1 else np.zeros(0, dtype=np.int16)

    assert playout_lag_ms(lambda pcm: pcm.copy(), 8000, 8000) == pytest.approx(0.0)
    assert playout_lag_ms(hold_one_chunk, 8000, 8000) == pytest.approx(20.0)


def band_noise(rate: int, lo_hz: float, hi_hz: float, seconds: float, seed: int) -> Signal:
    """Periodic noise with energy only between lo_hz and hi_hz, peak 20000."""
    n = int(rate * seconds)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(freqs < lo_hz) | (freqs > hi_hz)] = 0
    x = np.fft.irfft(spectrum, n)
    return np.round(x / np.abs(x).max() * 20000).astype(np.int16)


def power(x: npt.NDArray[np.generic]) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


def test_telephone_example_4_to_12_khz_noise_does_not_reach_8_khz() -> None:
    x = band_noise(24000, 4000, 12000, 2.0, seed=1)
    y = stream(Resampler(24000, 8000), x, 480)
    steady = y[800:-800]  # away from the stream's abrupt start and end
    assert 10 * np.log10(power(steady) / power(x)) <= -60


@pytest.mark.parametrize(("src", "dst"), DOWN_PAIRS)
def test_downsampling_leaks_at_most_minus_60_db_above_output_nyquist(src: int, dst: int) -> None:
    x = band_noise(src, dst / 2, min(1.5 * dst, src / 2), 1.0, seed=src + dst)
    y = stream(Resampler(src, dst), x, src // 50)
    steady = y[dst // 20 : -dst // 20]
    assert 10 * np.log10(power(steady) / power(x)) <= -60


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_passband_snr_at_least_60_db_against_ideal_band_limited_resampling(
    src: int, dst: int
) -> None:
    rng = np.random.default_rng(src * 7 + dst)
    nyquist = min(src, dst) / 2
    freqs = rng.uniform(50, 0.85 * nyquist, 6)
    phases = rng.uniform(0, 2 * np.pi, 6)

    def tones(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return sum(2500 * np.sin(2 * np.pi * f * t + p) for f, p in zip(freqs, phases, strict=True))  # type: ignore[return-value]

    x = np.round(tones(np.arange(src) / src)).astype(np.int16)  # 1 s
    rs = Resampler(src, dst)
    y = stream(rs, x, src // 50).astype(np.float64)
    t_out = np.arange(len(y)) / dst - rs.group_delay_ms / 1000
    steady = (t_out > 0.05) & (t_out < 0.95)
    ideal = tones(t_out[steady])
    snr_db = 10 * np.log10(power(ideal) / power(y[steady] - ideal))
    assert snr_db >= 60


@pytest.mark.parametrize(
    ("src", "dst"), [(8000, 24000), (24000, 8000), (44100, 16000), (16000, 48000)]
)
def test_full_scale_square_wave_saturates_and_never_wraps(src: int, dst: int) -> None:
    half = src // 200  # about 100 Hz
    hz = src / (2 * half)
    x = np.tile(np.r_[np.full(half, 32767), np.full(half, -32768)], 50).astype(np.int16)
    rs = Resampler(src, dst)
    y = stream(rs, x, src // 50).astype(np.int64)
    assert y.max() == 32767 and y.min() == -32768  # Gibbs overshoot is clipped
    # Away from the edges every output keeps the sign of its half-period.
    t = np.arange(len(y)) / dst - rs.group_delay_ms / 1000
    phase = (t * hz) % 1.0
    inside_high = (t > 0.01) & (t < 0.49) & (phase > 0.1) & (phase < 0.4)
    inside_low = (t > 0.01) & (t < 0.49) & (phase > 0.6) & (phase < 0.9)
    assert (y[inside_high] > 30000).all()
    assert (y[inside_low] < -30000).all()


def test_identity_passes_audio_through_untouched() -> None:
    x = np.random.default_rng(3).integers(-32768, 32767, 1000, dtype=np.int16)
    rs = Resampler(8000, 8000)
    assert rs.group_delay_ms == 0.0
    out = rs.process(x)
    assert np.array_equal(out, x) and out is not x
    assert rs.flush().shape == (0,)


def test_flush_starts_a_new_stream() -> None:
    x = np.random.default_rng(4).integers(-9000, 9000, 2000, dtype=np.int16)
    rs = Resampler(16000, 24000)
    first = stream(rs, x, 320)
    again = stream(rs, x, 320)
    assert np.array_equal(first, again)
    assert rs.flush().shape == (0,)  # nothing fed: nothing held back


@pytest.mark.parametrize("rate", [0, -8000, 22051, 96000, 8000.0, "8000", True])
def test_unsupported_rates_are_refused_with_the_supported_list(rate: object) -> None:
    kind = TypeError if not isinstance(rate, int) or isinstance(rate, bool) else ValueError
    with pytest.raises(kind, match="src_rate"):
        Resampler(rate, 8000)  # type: ignore[arg-type]
    with pytest.raises(kind, match="dst_rate"):
        Resampler(8000, rate)  # type: ignore[arg-type]
    if kind is ValueError:
        with pytest.raises(ValueError, match="8000, 11025, 16000"):
            Resampler(rate, 8000)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [
        (np.zeros(160, dtype=np.float32), TypeError, "int16"),
        (np.zeros(160, dtype=np.int32), TypeError, "int16"),
        (np.zeros((2, 160), dtype=np.int16), ValueError, r"shape \(n,\)"),
        (bytes(320), TypeError, "pcm16_from_bytes"),
        ([0] * 160, TypeError, "numpy int16 array"),
    ],
)
def test_bad_chunks_are_refused_and_the_stream_goes_on(
    bad: object, error: type, words: str
) -> None:
    x = np.random.default_rng(5).integers(-9000, 9000, 1600, dtype=np.int16)
    clean = stream(Resampler(8000, 16000), x, 160)
    rs = Resampler(8000, 16000)
    parts = [rs.process(x[:800])]
    with pytest.raises(error, match=words):
        rs.process(bad)  # type: ignore[arg-type]
    parts += [rs.process(x[800:]), rs.flush()]
    assert np.array_equal(np.concatenate(parts), clean)
