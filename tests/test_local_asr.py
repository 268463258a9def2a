"""PocketSphinx recognition (actors/local/asr.py): transcripts and receptionist intents.

The figures quoted in asr.py's docstring come from these files; the tests
below check the decisions and the margins around the threshold.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import structlog

from switchboard.actors.local import tts
from switchboard.actors.local.asr import (
    CMN_WINDOW_MS,
    DEFAULT_PRIOR_LOG_ODDS,
    Recognition,
    Recognizer,
)
from switchboard.actors.local.wavfile import read_wav
from switchboard.codecs import Resampler, ulaw_decode, ulaw_encode

DATA = Path(__file__).parent / "data" / "speech"

RECEPTIONIST = {
    "hours": [
        "what are your opening hours",
        "when are you open",
        "what time do you close",
        "are you open today",
        "opening hours",
    ],
    "booking": [
        "i would like to book an appointment",
        "book an appointment",
        "make an appointment",
        "schedule a visit",
    ],
    "human": [
        "can i talk to a human please",
        "talk to a human",
        "speak to a person",
        "a real person",
        "operator",
    ],
    "emergency": ["this is an emergency", "emergency", "i need help right now", "it is urgent"],
    "goodbye": ["thank you goodbye", "goodbye", "bye", "that is all thank you"],
}
SYNTHETIC = {
    "hours.wav": "hours",
    "book.wav": "booking",
    "human.wav": "human",
    "emergency.wav": "emergency",
    "bye.wav": "goodbye",
}
LINES = {
    "what are your opening hours": "hours",
    "thank you goodbye": "goodbye",
    "can I talk to a human please": "human",
    "I would like to book an appointment": "booking",
    "this is an emergency": "emergency",
}


def read_transcripts(kind: str) -> dict[str, str]:
    lines = (DATA / kind / "transcripts.tsv").read_text().splitlines()
    return dict(line.split("\t", 1) for line in lines if line.strip())


RECORDED = read_transcripts("recorded")


def phone_path(pcm: np.ndarray, rate: int) -> np.ndarray:
    """A recording as a phone call delivers it: 8 kHz G.711 mu-law, decoded to PCM16."""
    rs = Resampler(rate, 8000)
    return ulaw_decode(ulaw_encode(np.concatenate([rs.process(pcm), rs.flush()])))


def recorded(name: str) -> np.ndarray:
    rate, pcm = read_wav(DATA / "recorded" / name)
    return phone_path(pcm, rate)


def espeak(text: str, rate_wpm: int) -> np.ndarray:
    return ulaw_decode(tts.synthesize_ulaw(text, voice="en-us", rate_wpm=rate_wpm))


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[:], i
        for j, h in enumerate(hyp, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (r != h))
    return row[len(hyp)] / len(ref)


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(RECEPTIONIST)


# -- intents -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "intent"), sorted(SYNTHETIC.items()))
def test_the_synthetic_caller_lines_get_their_intent(
    recognizer: Recognizer, name: str, intent: str
) -> None:
    rate, pcm = read_wav(DATA / "synthetic" / name)
    assert rate == 8000
    heard = recognizer.recognize(pcm, rate)
    assert heard.intent == intent, heard
    assert 0.5 <= heard.confidence <= 1.0


MISS = (
    "known miss, see asr.py: required log-odds +60 against the threshold's +45; the "
    "acoustic model hears eSpeak's line as 'i did not alert and the'"
)
ESPEAK_CASES = [
    pytest.param(
        text,
        intent,
        rate,
        marks=[pytest.mark.xfail(strict=True, reason=MISS)]
        if (intent, rate) == ("emergency", 175)
        else [],
    )
    for text, intent in sorted(LINES.items())
    for rate in (150, 175)
]


@pytest.mark.parametrize(("text", "intent", "rate_wpm"), ESPEAK_CASES)
def test_fresh_espeak_lines_get_their_intent(
    recognizer: Recognizer, text: str, intent: str, rate_wpm: int
) -> None:
    heard = recognizer.recognize(espeak(text, rate_wpm), 8000)
    assert heard.intent == intent, heard


def test_the_missed_line_is_classified_right_but_rejected(recognizer: Recognizer) -> None:
    evidence = recognizer.evidence(espeak("this is an emergency", 175), 8000)
    assert evidence.candidate == "emergency"
    assert evidence.required_log_odds == pytest.approx(60.4, abs=2.0)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_real_speech_that_asks_for_nothing_gets_no_intent(
    recognizer: Recognizer, name: str
) -> None:
    heard = recognizer.recognize(recorded(name), 8000)
    assert heard.intent is None, heard
    assert heard.transcript  # but it was heard, and is logged


def test_the_threshold_sits_between_the_nearest_cases(recognizer: Recognizer) -> None:
    """The two measurements nearest the threshold, on either side of it."""
    accepted = recognizer.evidence(espeak("this is an emergency", 150), 8000)
    rejected = recognizer.evidence(recorded("cards-001.wav"), 8000)
    assert accepted.candidate == "emergency"
    assert accepted.required_log_odds == pytest.approx(29.9, abs=2.0)
    assert rejected.candidate == "booking"  # "ten of clubs" is nearest to "book an appointment"
    assert rejected.required_log_odds == pytest.approx(51.3, abs=2.0)
    assert accepted.required_log_odds < DEFAULT_PRIOR_LOG_ODDS < rejected.required_log_odds


def test_a_phrase_heard_verbatim_needs_no_race(recognizer: Recognizer) -> None:
    rate, pcm = read_wav(DATA / "synthetic" / "book.wav")
    evidence = recognizer.evidence(pcm, rate)
    assert evidence.heard_verbatim
    assert evidence.phrases == ("i would like to book an appointment",)
    assert evidence.transcript.startswith("i would like to book an appointment")


def test_a_higher_prior_accepts_more() -> None:
    eager = Recognizer(RECEPTIONIST, prior_log_odds=120.0)
    assert eager.recognize(espeak("this is an emergency", 175), 8000).intent == "emergency"
    assert eager.recognize(recorded("cards-001.wav"), 8000).intent == "booking"


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_browser_rates(recognizer: Recognizer, rate: int) -> None:
    pcm = tts.synthesize_at("what are your opening hours", rate, rate_wpm=150)
    assert recognizer.recognize(pcm, rate).intent == "hours"


# -- transcripts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "measured"), [("goforward.wav", 0.50), ("librivox-0880.wav", 0.375)]
)
def test_real_speech_is_transcribed_close_to_its_reference(
    recognizer: Recognizer, name: str, measured: float
) -> None:
    heard = recognizer.recognize(recorded(name), 8000)
    wer = word_error_rate(RECORDED[name], heard.transcript)
    assert wer <= 0.5, heard.transcript
    assert wer == pytest.approx(measured, abs=0.01), heard.transcript


def test_silence_is_no_words_and_no_intent(recognizer: Recognizer) -> None:
    heard = recognizer.recognize(np.zeros(8000, np.int16), 8000)
    assert heard == Recognition("", None, heard.confidence, heard.decode_ms)
    empty = recognizer.recognize(np.zeros(0, np.int16), 8000)
    assert empty.transcript == "" and empty.intent is None


def test_an_agent_without_intents_still_gets_transcripts() -> None:
    plain = Recognizer({})
    heard = plain.recognize(recorded("librivox-0880.wav"), 8000)
    assert heard.intent is None and "young man" in heard.transcript


# -- streaming -----------------------------------------------------------------


@pytest.mark.parametrize("piece", [160, 1000, 4096])
def test_any_split_of_the_audio_gives_the_same_result(recognizer: Recognizer, piece: int) -> None:
    """What the caller hears back cannot depend on how the audio reached the worker."""
    pcm = recorded("librivox-0880.wav")
    whole = recognizer.recognize(pcm, 8000)
    utterance = recognizer.start(8000)
    for i in range(0, len(pcm), piece):
        utterance.feed(pcm[i : i + piece])
    heard = utterance.finish()
    assert (heard.transcript, heard.intent, heard.confidence) == (
        whole.transcript,
        whole.intent,
        whole.confidence,
    )


def test_the_normalization_window_starts_where_the_speech_starts(recognizer: Recognizer) -> None:
    """A VAD's pre-roll before the speech does not shift what the decoder normalizes on."""
    pcm = espeak("what are your opening hours", 150)
    preroll = np.full(2400, 3, np.int16)  # 300 ms of a quiet line
    clip = recognizer.recognize(pcm, 8000)
    utterance = recognizer.start(8000, speech_start_ms=300)
    utterance.feed(preroll)
    utterance.feed(pcm)
    cut = utterance.finish()
    assert cut.intent == clip.intent == "hours"


def test_a_short_utterance_is_decoded_whole_at_its_end(recognizer: Recognizer) -> None:
    """Shorter than the normalization window: nothing is decoded until it ends."""
    pcm = espeak("bye", 175)
    assert len(pcm) < 8 * CMN_WINDOW_MS
    utterance = recognizer.start(8000)
    utterance.feed(pcm)
    assert recognizer.decoders.idle_open >= 1  # no decoder taken yet
    assert utterance.finish().intent == "goodbye"


def test_a_guess_before_the_end_changes_nothing(recognizer: Recognizer) -> None:
    """The finishing work may start while the VAD waits: a guess made at a pause that
    turns out not to be the end leaves the result as it would have been."""
    pcm = recorded("librivox-0880.wav")
    whole = recognizer.recognize(pcm, 8000)
    utterance = recognizer.start(8000)
    half = len(pcm) // 2
    utterance.feed(pcm[:half])
    early = utterance.guess()  # the caller paused; it was not the end
    utterance.feed(pcm[half:])
    last = utterance.guess()  # the caller stopped
    assert early.transcript != whole.transcript
    assert utterance.finish() == last  # no more audio: the guess is the answer, at once
    assert (last.transcript, last.intent, last.confidence) == (
        whole.transcript,
        whole.intent,
        whole.confidence,
    )


def test_a_finished_utterance_takes_no_more_audio(recognizer: Recognizer) -> None:
    utterance = recognizer.start(8000)
    utterance.feed(np.zeros(800, np.int16))
    utterance.finish()
    with pytest.raises(RuntimeError, match="finished"):
        utterance.feed(np.zeros(800, np.int16))
    utterance.abandon()  # harmless afterwards


# -- phrases, threads, errors ----------------------------------------------------


def test_words_missing_from_the_dictionary_are_spelled_or_skipped_and_logged() -> None:
    with structlog.testing.capture_logs() as logs:
        odd = Recognizer({"doctor": ["call the gp", "talk to zorblax", "zorblax"]})
    assert odd.intents["doctor"] == ("call the g p", "talk to")
    events = {(e["event"], e.get("word")) for e in logs}
    assert ("asr.word_spelled", "gp") in events
    assert ("asr.word_skipped", "zorblax") in events
    assert ("asr.phrase_dropped", None) in events


def test_two_threads_at_once_get_what_one_thread_gets(recognizer: Recognizer) -> None:
    clips = [recorded("cards-004.wav"), espeak("thank you goodbye", 150)]
    alone = [recognizer.recognize(c, 8000) for c in clips]
    together: list[Recognition | None] = [None, None]
    barrier = threading.Barrier(2)

    def listen(i: int) -> None:
        barrier.wait()
        together[i] = recognizer.recognize(clips[i], 8000)

    threads = [threading.Thread(target=listen, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for mine, theirs in zip(alone, together, strict=True):
        assert theirs is not None
        assert (theirs.transcript, theirs.intent, theirs.confidence) == (
            mine.transcript,
            mine.intent,
            mine.confidence,
        )


def test_bad_audio_is_refused(recognizer: Recognizer) -> None:
    with pytest.raises(TypeError, match="int16"):
        recognizer.recognize(np.zeros(8000, np.float32), 8000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mono"):
        recognizer.recognize(np.zeros((2, 8000), np.int16), 8000)
    with pytest.raises(ValueError, match="12345"):
        recognizer.recognize(np.zeros(8000, np.int16), 12345)
    with pytest.raises(ValueError, match="confidence"):
        Recognition("", None, 1.5, 0.0)
