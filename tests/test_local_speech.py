"""The local provider's ears: voice activity detection and intent recognition on real audio."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from switchboard.actors.local import tts
from switchboard.actors.local.asr import Recognizer
from switchboard.actors.local.vad import SpeechEnded, SpeechStarted, VoiceActivityDetector
from switchboard.actors.local.wavfile import read_wav
from switchboard.codecs import Resampler, ulaw_decode, ulaw_encode
from switchboard.orchestrator.agent_file import load_agent_file

DATA = Path(__file__).parent / "data" / "speech"
AGENT = load_agent_file(Path(__file__).parents[1] / "examples" / "receptionist.yaml")
SYNTHETIC = {
    "hours.wav": "hours",
    "book.wav": "booking",
    "human.wav": "human",
    "bye.wav": "goodbye",
}


def phone_path(pcm: np.ndarray, rate: int) -> np.ndarray:
    """What a phone call delivers: 8 kHz, through G.711 mu-law."""
    if rate != 8000:
        rs = Resampler(rate, 8000)
        pcm = np.concatenate([rs.process(pcm), rs.flush()])
    return ulaw_decode(ulaw_encode(pcm))


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer({i.name: i.phrases for i in AGENT.intents})


def vad_events(pcm: np.ndarray, chunk: int = 160) -> list[object]:
    vad = VoiceActivityDetector(sample_rate=8000)
    return [e for i in range(0, len(pcm), chunk) for e in vad.process(pcm[i : i + chunk])]


def padded(pcm: np.ndarray, before_s: float, after_s: float, noise: float = 30.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    quiet = lambda s: (rng.standard_normal(int(8000 * s)) * noise).astype(np.int16)  # noqa: E731
    return np.concatenate([quiet(before_s), pcm, quiet(after_s)])


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_vad_finds_one_utterance_where_the_speech_is(name: str) -> None:
    _, pcm = read_wav(DATA / "synthetic" / name)
    voiced = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 500)
    events = vad_events(padded(pcm, 1.0, 1.5))
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(starts) == len(ends) == 1
    assert abs(starts[0].sample - (8000 + voiced[0])) <= 800  # within 100 ms
    assert abs(ends[0].sample - (8000 + voiced[-1])) <= 800


def test_vad_ignores_silence_and_line_noise() -> None:
    assert vad_events(padded(np.zeros(0, np.int16), 3.0, 3.0, noise=200.0)) == []
    assert vad_events(np.zeros(8000 * 3, np.int16)) == []


def test_vad_separates_two_lines_and_any_chunking_gives_the_same_events() -> None:
    _, first = read_wav(DATA / "synthetic" / "hours.wav")
    _, second = read_wav(DATA / "synthetic" / "bye.wav")
    call = padded(np.concatenate([padded(first, 0.5, 1.5), second]), 0.5, 1.5)
    by_frame = vad_events(call, 160)
    assert [type(e) for e in by_frame] == [SpeechStarted, SpeechEnded] * 2
    assert vad_events(call, 1) == by_frame == vad_events(call, 4801)


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_caller_lines_get_their_intent(recognizer: Recognizer, name: str) -> None:
    rate, pcm = read_wav(DATA / "synthetic" / name)
    assert recognizer.recognize(phone_path(pcm, rate), 8000).intent == SYNTHETIC[name]


@pytest.mark.parametrize(
    ("line", "intent"),
    [
        ("what are your opening hours", "hours"),
        ("thank you goodbye", "goodbye"),
        ("I would like to book an appointment", "booking"),
    ],
)
def test_the_demo_callers_espeak_lines_get_their_intent(
    recognizer: Recognizer, line: str, intent: str
) -> None:
    heard = recognizer.recognize(ulaw_decode(tts.synthesize_ulaw(line)), 8000)
    assert heard.intent == intent, heard


@pytest.mark.parametrize("name", ["goforward.wav", "librivox-0870.wav"])
def test_real_speech_without_an_intent_gets_none(recognizer: Recognizer, name: str) -> None:
    rate, pcm = read_wav(DATA / "recorded" / name)
    assert recognizer.recognize(phone_path(pcm, rate), 8000).intent is None


def test_a_real_recording_through_the_phone_path_is_transcribed_close_to_its_reference(
    recognizer: Recognizer,
) -> None:
    reference = "go forward ten meters"
    rate, pcm = read_wav(DATA / "recorded" / "goforward.wav")
    heard = recognizer.recognize(phone_path(pcm, rate), 8000).transcript
    ref, hyp = reference.split(), re.findall(r"[a-z']+", heard)
    assert len(set(ref) & set(hyp)) >= len(ref) / 2, heard
