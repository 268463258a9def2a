"""Offline speech recognition with PocketSphinx: a transcript, and the agent's intent.

Two searches run over each utterance (PocketSphinx 5, its US English model
from the wheel, 16 kHz):

- the open-vocabulary language model: the transcript, for the log;
- a JSGF grammar of the agent's intent phrases: what the caller wants.

The grammar search always finds *some* phrase, so it needs rejection. Two
tests, both measured on the shared speech samples (synthetic receptionist
lines, eSpeak NG lines through the phone path, and real recordings that
express no intent; ``tests/test_local_asr.py``):

1. Coverage: the grammar's best path must cover a phrase. When the search
   does not reach the grammar's end it returns a partial path; a partial
   path counts only when it is a prefix of exactly one phrase and covers at
   least 75% of its words (the last word of a phrase is often clipped);
   out-of-domain speech mostly ends in short partial paths or none.
2. Acoustic fit: the mean acoustic log-likelihood per frame of the grammar
   path's words must be no more than ``MAX_FIT_LOSS`` below that of the open
   search's words over the same audio. Forcing unrelated speech onto a
   phrase costs more than that.

Both are heuristics with measured margins, not guarantees; the open
transcript is logged whatever the intent, so a miss is visible. Known
misses on the samples: the card name "ten of clubs" (cards-001) is taken
for "book an appointment"; some eSpeak lines at 150 words a minute ("can I
talk to a human please") are rejected.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import structlog
from pocketsphinx import Decoder

from switchboard.codecs import Pcm16, Resampler

log = structlog.get_logger("switchboard.asr")

RATE = 16000
PAD_MS = 300  # silence around an utterance: PocketSphinx expects some at both ends
MAX_FIT_LOSS = 0.9  # nats per frame (see the module docstring)
MIN_PREFIX_COVER = 0.75
_FILLERS = {"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "[BREATH]", "[COUGH]", "[UM]", "[UH]"}


@dataclass(frozen=True)
class Recognition:
    """One utterance: ``transcript`` (open vocabulary), ``intent`` (or None), and how sure."""

    transcript: str
    intent: str | None
    confidence: float
    decode_ms: float


def normalize(phrase: str) -> str:
    return " ".join(re.findall(r"[a-z']+", phrase.lower()))


class Recognizer:
    """A recognizer for one agent's intents (thread-safe; decoders built once)."""

    def __init__(self, intents: Mapping[str, Sequence[str]]) -> None:
        self._lock = threading.Lock()
        self._open = Decoder(samprate=RATE, loglevel="FATAL")
        self._phrases: dict[str, str] = {}
        for intent, phrases in intents.items():
            for phrase in phrases:
                words = normalize(phrase)
                missing = [w for w in words.split() if self._open.lookup_word(w) is None]
                if not words or missing:
                    log.warning(
                        "intent phrase skipped", intent=intent, phrase=phrase, missing=missing
                    )
                    continue
                self._phrases.setdefault(words, intent)
        self._grammar: Decoder | None = None
        if self._phrases:
            self._grammar = Decoder(samprate=RATE, loglevel="FATAL", lm=None)
            rules = " | ".join(sorted(self._phrases))
            self._grammar.add_jsgf_string(
                "intents", f"#JSGF V1.0;\ngrammar intents;\npublic <utterance> = {rules} ;\n"
            )
            self._grammar.activate_search("intents")

    def recognize(self, pcm: Pcm16, sample_rate: int) -> Recognition:
        """Recognize one utterance (int16, shape (n,), at ``sample_rate`` Hz)."""
        started = time.perf_counter()
        audio = pcm if sample_rate == RATE else _resample(pcm, sample_rate)
        pad = np.zeros(RATE * PAD_MS // 1000, dtype=np.int16)
        raw = np.concatenate([pad, audio, pad]).tobytes()
        with self._lock:
            transcript, open_fit = _decode(self._open, raw)
            intent, confidence = None, 0.0
            if self._grammar is not None and transcript:
                path, grammar_fit = _decode(self._grammar, raw)
                phrase = self._covered_phrase(path)
                loss = open_fit - grammar_fit
                if phrase is not None and loss <= MAX_FIT_LOSS:
                    intent = self._phrases[phrase]
                    confidence = float(min(1.0, max(0.0, 1.0 - loss / (2 * MAX_FIT_LOSS))))
        return Recognition(transcript, intent, confidence, (time.perf_counter() - started) * 1000)

    def _covered_phrase(self, path: str) -> str | None:
        if not path:
            return None
        if path in self._phrases:
            return path
        words = path.split()
        candidates = [p for p in self._phrases if p.split()[: len(words)] == words]
        if len(candidates) == 1 and len(words) >= MIN_PREFIX_COVER * len(candidates[0].split()):
            return candidates[0]
        return None


def _resample(pcm: Pcm16, rate: int) -> Pcm16:
    rs = Resampler(rate, RATE)
    return np.concatenate([rs.process(pcm), rs.flush()])


def _decode(decoder: Decoder, raw: bytes) -> tuple[str, float]:
    """The words of the best path, and their mean acoustic log-likelihood per frame."""
    decoder.start_utt()
    decoder.process_raw(raw, full_utt=True)
    decoder.end_utt()
    if decoder.hyp() is None:
        return "", 0.0
    words, score, frames = [], 0.0, 0
    for seg in decoder.seg():
        if seg.word in _FILLERS or seg.word.startswith("+"):
            continue
        words.append(re.sub(r"\(\d+\)$", "", seg.word))
        score += float(np.log(max(seg.ascore, 1e-300)))
        frames += seg.end_frame - seg.start_frame + 1
    return " ".join(words), score / max(frames, 1)
