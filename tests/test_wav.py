"""A recording's tracks as WAV: the player's layout rule, clears, headers, exact byte ranges."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import switchboard.codecs.wav as wav_module
from switchboard.codecs import pcm16_to_bytes, ulaw_decode, ulaw_encode
from switchboard.codecs.recording_format import Kind, Record
from switchboard.codecs.wav import WavSource, track_layout


def tone(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-20000, 20000, n).astype(np.int16)


def mulaw(n: int, seed: int) -> bytes:
    return ulaw_encode(tone(n, seed))


def caller(t_ms: float, data: bytes) -> Record:
    return Record(Kind.CALLER_AUDIO, t_ms, data)


def agent(t_ms: float, data: bytes) -> Record:
    return Record(Kind.AGENT_AUDIO, t_ms, data)


def clear(t_ms: float) -> Record:
    return Record(Kind.AGENT_CLEARED, t_ms, b"")


def parse(blob: bytes) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(io.BytesIO(blob)) as reader:
        params = reader.getparams()
        frames = reader.readframes(params.nframes)
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, params.nchannels)
    return params, samples


def whole(source: WavSource) -> bytes:
    return source.read(0, source.size)


def test_caller_track_chunks_at_their_offsets_sample_exact() -> None:
    chunks = [mulaw(160, i) for i in range(50)]
    records = [caller(20.0 * i, c) for i, c in enumerate(chunks)]
    source = WavSource(track_layout(records, Kind.CALLER_AUDIO, 8000, "pcmu"), None)
    params, samples = parse(whole(source))
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 8000)
    assert params.nframes == 8000 and source.size == 44 + 16000
    assert np.array_equal(samples[:, 0], ulaw_decode(b"".join(chunks)))
    assert source.duration_ms == 1000.0


def test_a_gap_is_silence_and_an_overlap_is_pushed_after() -> None:
    a, b, c = mulaw(160, 1), mulaw(160, 2), mulaw(160, 3)
    records = [agent(0.0, a), agent(5.0, b), agent(100.0, c)]  # b arrives while a plays
    layout = track_layout(records, Kind.AGENT_AUDIO, 8000, "pcmu")
    assert layout.starts == [0, 160, 800]
    _, samples = parse(whole(WavSource(None, layout)))
    pcm = samples[:, 0]
    assert np.array_equal(pcm[:160], ulaw_decode(a))
    assert np.array_equal(pcm[160:320], ulaw_decode(b))
    assert not pcm[320:800].any()
    assert np.array_equal(pcm[800:960], ulaw_decode(c))


def test_a_clear_cuts_what_was_not_heard_and_the_next_answer_starts_at_the_clear() -> None:
    burst = [mulaw(160, i) for i in range(10)]  # 200 ms sent at once at t=0
    after = mulaw(160, 99)
    records = [agent(0.0, c) for c in burst] + [clear(50.0), agent(60.0, after)]
    records.append(caller(0.0, mulaw(160, 7)))  # another track: untouched
    layout = track_layout(records, Kind.AGENT_AUDIO, 8000, "pcmu")
    assert layout.starts == [0, 160, 320, 480] and layout.lengths == [160, 160, 80, 160]
    _, samples = parse(whole(WavSource(None, layout)))
    heard = ulaw_decode(b"".join(burst))[:400]
    assert np.array_equal(samples[:400, 0], heard)
    assert not samples[400:480, 0].any()
    assert np.array_equal(samples[480:, 0], ulaw_decode(after))

    sent_right_after = track_layout(
        [*records[:10], clear(50.0), agent(50.0, after)], Kind.AGENT_AUDIO, 8000, "pcmu"
    )
    assert sent_right_after.starts[-1] == 400  # the emptied buffer starts it at once


def test_clears_never_touch_the_caller_track() -> None:
    records = [caller(0.0, mulaw(800, 1)), clear(10.0)]
    assert track_layout(records, Kind.CALLER_AUDIO, 8000, "pcmu").lengths == [800]
    cut = track_layout([agent(0.0, mulaw(800, 1)), clear(10.0)], Kind.AGENT_AUDIO, 8000, "pcmu")
    assert cut.lengths == [80]


def test_stereo_left_caller_right_agent_shorter_padded() -> None:
    left = tone(24000, 1)
    right = tone(12000, 2)
    records = [
        caller(0.0, pcm16_to_bytes(left[:12000])),
        agent(250.0, pcm16_to_bytes(right)),
        caller(500.0, pcm16_to_bytes(left[12000:])),
    ]
    source = WavSource(
        track_layout(records, Kind.CALLER_AUDIO, 24000, "pcm16"),
        track_layout(records, Kind.AGENT_AUDIO, 24000, "pcm16"),
    )
    params, samples = parse(whole(source))
    assert (params.nchannels, params.framerate, params.nframes) == (2, 24000, 24000)
    assert np.array_equal(samples[:, 0], left)
    assert not samples[:6000, 1].any() and not samples[18000:, 1].any()
    assert np.array_equal(samples[6000:18000, 1], right)


def test_tracks_at_different_rates_or_unknown_input_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="8000 Hz and the agent track 16000 Hz"):
        WavSource(
            track_layout([], Kind.CALLER_AUDIO, 8000, "pcmu"),
            track_layout([], Kind.AGENT_AUDIO, 16000, "pcm16"),
        )
    with pytest.raises(ValueError, match="cannot decode 'opus'"):
        track_layout([], Kind.CALLER_AUDIO, 48000, "opus")
    with pytest.raises(ValueError, match="odd"):
        track_layout([caller(0.0, b"\x00\x01\x02")], Kind.CALLER_AUDIO, 16000, "pcm16")
    with pytest.raises(ValueError, match="at least one track"):
        WavSource(None, None)


def test_an_empty_track_is_a_valid_empty_wav() -> None:
    source = WavSource(track_layout([], Kind.CALLER_AUDIO, 8000, "pcmu"), None)
    params, samples = parse(whole(source))
    assert source.size == 44 and params.nframes == 0 and samples.size == 0


def test_a_range_read_decodes_only_the_chunks_it_covers(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [mulaw(160, i) for i in range(7)]
    hour = [caller(20.0 * i, frames[i % 7]) for i in range(180_000)]
    source = WavSource(track_layout(hour, Kind.CALLER_AUDIO, 8000, "pcmu"), None)
    decoded: list[int] = []

    def counting(data: memoryview) -> np.ndarray:
        decoded.append(len(data))
        return ulaw_decode(data)

    monkeypatch.setattr(wav_module, "ulaw_decode", counting)
    middle = source.size // 2
    got = source.read(middle, middle + 1000)
    assert len(got) == 1000
    assert sum(decoded) <= 501 + 160 and len(decoded) <= 5
    offset = (middle - 44) // 2
    expected = ulaw_decode(b"".join(r.data for r in hour[offset // 160 : offset // 160 + 5]))
    start = offset - (offset // 160) * 160
    assert got == expected[start : start + 500].astype("<i2").tobytes()


# --- Any range equals the same slice of the whole render --------------------------------------


def reference(records: list[Record], kind: Kind) -> np.ndarray:
    """The layout rule written the slow, obvious way: a player's buffer, sample by sample."""
    timeline: dict[int, int] = {}
    end = 0
    for r in records:
        if r.kind is kind:
            at = max(round(r.t_ms * 8), end)
            for i, s in enumerate(ulaw_decode(r.data)):
                timeline[at + i] = int(s)
            end = at + len(r.data)
        elif r.kind is Kind.AGENT_CLEARED and kind is Kind.AGENT_AUDIO:
            cut = round(r.t_ms * 8)
            timeline = {k: v for k, v in timeline.items() if k < cut}
            end = min(end, cut)
    out = np.zeros(max(timeline, default=-1) + 1, dtype=np.int16)
    for k, v in timeline.items():
        out[k] = v
    return out


events = st.lists(
    st.tuples(
        st.sampled_from([Kind.CALLER_AUDIO, Kind.AGENT_AUDIO, Kind.AGENT_CLEARED]),
        st.floats(0, 400, allow_nan=False),
        st.integers(1, 400),
    ),
    max_size=25,
)


def build(spec: list[tuple[Kind, float, int]]) -> list[Record]:
    records = []
    for i, (kind, t, n) in enumerate(sorted(spec, key=lambda e: e[1])):
        records.append(Record(kind, t, b"" if kind is Kind.AGENT_CLEARED else mulaw(n, i)))
    return records


@settings(max_examples=150, deadline=None)
@given(events, st.sampled_from(["caller", "agent", "both"]), st.data())
def test_any_range_read_is_the_same_slice_of_the_whole(
    spec: list[tuple[Kind, float, int]], track: str, data: st.DataObject
) -> None:
    records = build(spec)
    layouts = {
        "caller": track_layout(records, Kind.CALLER_AUDIO, 8000, "pcmu"),
        "agent": track_layout(records, Kind.AGENT_AUDIO, 8000, "pcmu"),
    }
    source = WavSource(
        layouts["caller"] if track in ("caller", "both") else None,
        layouts["agent"] if track in ("agent", "both") else None,
    )
    full = whole(source)
    assert len(full) == source.size
    _, samples = parse(full)
    refs = {
        k: reference(records, kind)
        for k, kind in (("caller", Kind.CALLER_AUDIO), ("agent", Kind.AGENT_AUDIO))
    }
    for column, name in enumerate(["caller", "agent"] if track == "both" else [track]):
        ref = refs[name]
        assert np.array_equal(samples[: len(ref), column], ref)
        assert not samples[len(ref) :, column].any()

    start = data.draw(st.integers(0, source.size + 10), label="start")
    end = data.draw(st.integers(0, source.size + 10), label="end")
    assert source.read(start, end) == full[start:end]
    assert b"".join(source.iter_range(start, end, chunk_bytes=7)) == full[start:end]
