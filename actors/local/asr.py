"""Offline speech recognition with PocketSphinx: what the caller said, and which intent.

PocketSphinx 5.1.1 with the US English model from its wheel (16 kHz,
semi-continuous acoustic model, trigram language model, CMU dictionary).
Each utterance goes through two searches:

1. **Open search** with the general language model (LM): the transcript, for
   the log. Its best word sequence ``W`` is also the "anything else"
   hypothesis H0 of step 2.
2. **Intent race**: one finite-state grammar (FSG) search over two branches
   that compete on the same audio,

   - H0: exactly the words ``W``, each weighted by its trigram LM probability;
   - H1: one or more of the agent's intent phrases (uniform prior over the
     phrases; each further phrase costs a factor 0.1),

   all language scores raised to the decoder's language weight ``lw`` (6.5),
   as in the open search. H1 gets a bonus of ``prior_log_odds`` nats. If H1
   wins, its phrases give the intent; if H0 wins, the utterance expresses no
   intent. This is the maximum a posteriori choice between "one of the
   agent's phrases" and "the best open-vocabulary sentence", with
   ``prior_log_odds`` as the prior log-odds of the first (in the decoder's
   lw-scaled units); the acoustic evidence is the likelihood ratio of the two
   paths, scored by the same search, so it is comparable.

   If ``W`` itself contains phrases (the unconstrained recognizer heard a
   phrase verbatim, as in "I would like to book an appointment for tomorrow"),
   their intent is taken without the race.

The race runs once for the decision and up to seven more times, bisecting
the bonus, for the confidence.

**Streaming.** The open search runs while the caller speaks
(:meth:`Recognizer.start`, :class:`UtteranceDecoder`), so at the end of the
utterance only the finishing work remains: the last audio and the padding,
the open search's second pass and lattice, and the races (which need ``W``,
so they run at the end, on the audio already in the decoder's process). The
model is configured for *batch* cepstral mean normalization (CMN: each
utterance normalized by its own mean cepstrum, known only at its end); fed
as a stream with the model's initial mean instead, the open search is
useless on phone audio ("i would like to book an appointment" comes out as
"what what are you do"). So the stream waits for the first
:data:`CMN_WINDOW_MS` (600 ms) of speech, normalizes the whole utterance
with that window's mean (PocketSphinx's own batch CMN of the window), and
then decodes as the audio comes; an utterance shorter than that is decoded
whole at its end, with batch CMN, as before. Measured on 34 cases (the 5
synthetic files, the 5 lines at 140/150/165/175 wpm, the 9 recordings of
the shared speech data through the phone path), decoded as clips and as the
VAD cuts them from a line with noise: the whole-utterance decode decided 31
and 29 of 34 right, the 600 ms window 32 and 31, with the same word error
rate on the recordings (0.61/0.49 against 0.59/0.50); windows of 200-300 ms
lose words (WER 0.7-1.0), 400-500 ms gave 30-34 right depending on the path,
800 ms 31-33.

Cost, measured on the test data (2 cores, one used): about 0.25-0.35 s of
CPU per second of audio for the open search (including the 0.6 s of
padding per utterance), of which all but the last few hundred ms of audio is
spent while the caller is still speaking; the races take about 0.05 s per
second of audio, at the end.

The *required log-odds* of an utterance is the smallest bonus at which H1
wins (found by bisection; :meth:`Recognizer.evidence`). An intent is
accepted when it is at most ``prior_log_odds``. Measured on the test data
with the streaming decode (``tests/test_local_asr.py`` reproduces these; 16
kHz after the phone path 8 kHz G.711 mu-law, 300 ms of silence around each
utterance):

- eSpeak NG caller lines (the 5 files in ``tests/data/speech/synthetic`` and
  5 sentences synthesized at 150 and 175 words a minute): from -150 (heard
  verbatim) to +30, except "this is an emergency" at 175 wpm: +60. (book.wav
  is heard verbatim: "i would like to book an appointment or my early and".)
- Real recordings that express no intent (goforward, cards-001 and 004,
  librivox-0870/0880): +51 (cards-001, "ten of clubs", nearest to "book
  an appointment"), then +106 (cards-004) and up to the saturation at +137.

``DEFAULT_PRIOR_LOG_ODDS`` = 45 sits between the nearest cases on either side
(+30, an eSpeak "this is an emergency" at 150 wpm, and +51, cards-001), and
below the one synthetic line at +60, which is therefore rejected: a known
miss. (With the whole-utterance decode the nearest cases were +38 and +51
and the miss was "can I talk to a human please" at 175 wpm, at +98.) Real
callers are what the threshold has to protect; the acoustic model fits
eSpeak's formant synthesis badly (its open transcripts of eSpeak lines are
mostly wrong, "thank you goodbye" comes out as "and you look body"), which
is what pushes some synthetic lines up. The margins are thin, and small
changes to the signal move single utterances by tens of log-odds (measured
with the whole-utterance decode: halving the level moves cards-004 from
+106 to +68), so treat the threshold as a calibrated starting point, not a
guarantee: the transcript is logged with every decision, so misses are
visible.

What did not work, measured on the same data: the grammar alone (every
utterance maps to some phrase); per-frame acoustic score ratios against the
open search or a phone loop (eSpeak lines fit their own phrase worse than
real speech fits a wrong one); keyword spotting; a garbage loop of phone
words or of the ``[SPEECH]`` filler inside the grammar (too slow, or never
chosen); the open LM's full word lattice as H0 (makes eSpeak's "this is an
emergency" lose to lattice paths); noise or dither added to the audio
(changes results at random).

Processes: the PocketSphinx binding holds the GIL while it decodes
(measured: two decoders in two threads take twice as long as one), so a
decode stalls every other Python thread of its process, the Trio event loop
included. The runtime therefore decodes only in speech worker processes
(:mod:`.workers`); this module never runs in the main process. Within a
process :class:`Recognizer` is thread-safe (one lock per :class:`Decoders`);
every agent's recognizer in a process shares its :class:`Decoders`: one
race decoder and one open-search decoder per utterance in progress (about
90 MB each).

Errors: ``TypeError`` for audio that is not int16, ``ValueError`` for audio
that is not mono or a sample rate the Resampler does not support;
``RuntimeError`` when PocketSphinx fails. Intent phrases with words missing
from the dictionary never raise: an unknown word of up to 4 letters is
spelled ("gp" -> "g p"), a longer one is dropped from its phrase, and a
phrase left empty is dropped, each with a warning in the log.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Final, final

import numpy as np
import structlog

from switchboard.codecs import Pcm16

from .decoding import (
    _ALTERNATE,
    _FILLER,
    CMN_WINDOW_MS,
    Decoders,
    UtteranceDecoder,
    _check,
)
from .speech import DEFAULT_PRIOR_LOG_ODDS, Grammar, Recognition

__all__ = [
    "CMN_WINDOW_MS",
    "DEFAULT_PRIOR_LOG_ODDS",
    "Decoders",
    "IntentEvidence",
    "Recognition",
    "Recognizer",
    "UtteranceDecoder",
]

log = structlog.get_logger("switchboard.asr")

CONFIDENCE_SCALE: Final = 10.0
"""Log-odds margin (nats) per e-fold of the confidence odds."""
EVIDENCE_RANGE: Final = 150.0
"""Required log-odds are searched within +-this; beyond, they saturate."""

_REPEAT_PROB: Final = 0.1  # another phrase follows a phrase
_CONFIDENCE_STEPS: Final = 5  # bisection steps for the confidence (resolution 64/32 nats)
_CONFIDENCE_SPAN: Final = 64.0
_EVIDENCE_STEPS: Final = 14
_MAX_SPELLED: Final = 4  # unknown words up to this many letters are spelled out
_LN_FLOOR: Final = -50.0  # natural-log floor for an LM probability


@final
@dataclass(frozen=True, slots=True)
class IntentEvidence:
    """The measurements behind a decision (see :meth:`Recognizer.evidence`).

    Attributes:
        transcript: the open search's words.
        heard_verbatim: the open transcript contains the phrases itself.
        candidate: the intent of the intent branch's best path (or of the
            verbatim phrases), whether or not it is accepted; None if the
            agent has no phrases.
        phrases: the phrases of that path.
        required_log_odds: the smallest bonus at which the intent branch wins,
            in lw-scaled nats, saturated at +-:data:`EVIDENCE_RANGE`
            (-EVIDENCE_RANGE when heard verbatim).
    """

    transcript: str
    heard_verbatim: bool
    candidate: str | None
    phrases: tuple[str, ...]
    required_log_odds: float


class Recognizer:
    """Transcripts and intents for one agent's phrases (thread-safe).

    Args:
        intents: intent name -> example phrases (plain text, any case; words
            outside ``[a-z']`` are separators), or a :class:`~.speech.Grammar`.
        prior_log_odds: bonus of the intent branch, lw-scaled nats
            (:data:`DEFAULT_PRIOR_LOG_ODDS`); higher accepts more. Ignored
            when ``intents`` is a Grammar (it has its own).
        decoders: the process's :class:`Decoders` (by default, new ones).

    Raises:
        TypeError: an intent's phrases are a single str, not a sequence of str.
        RuntimeError: PocketSphinx cannot load its model.
    """

    def __init__(
        self,
        intents: Mapping[str, Sequence[str]] | Grammar,
        *,
        prior_log_odds: float = DEFAULT_PRIOR_LOG_ODDS,
        decoders: Decoders | None = None,
    ) -> None:
        grammar = (
            intents
            if isinstance(intents, Grammar)
            else Grammar.of(intents, prior_log_odds=prior_log_odds)
        )
        self.grammar = grammar
        self.prior_log_odds = grammar.prior_log_odds
        self.decoders = decoders if decoders is not None else Decoders()
        self._lock = self.decoders.lock
        self._race = self.decoders.race
        self._lm = self.decoders.lm
        self._lw = self.decoders.lw
        self._ln_base = self.decoders.ln_base
        self._names = count()
        mapping = grammar.as_mapping()
        with self._lock:
            self._phrases = self._compile(mapping)
        self.intents: Mapping[str, tuple[str, ...]] = {
            name: tuple(" ".join(p) for p, i in self._phrases.items() if i == name)
            for name in mapping
        }
        """The phrases in use per intent, as spelled for the decoder."""

    # -- public --------------------------------------------------------------

    def start(self, sample_rate: int, *, speech_start_ms: float = 0.0) -> UtteranceDecoder:
        """A decoder for one utterance, to be fed while the caller speaks.

        Args:
            sample_rate: Hz of the audio to come, any rate
                :class:`~switchboard.codecs.Resampler` supports.
            speech_start_ms: where speech begins in that audio (after a VAD's
                pre-roll), ms: the cepstral-mean window starts there.

        Raises:
            ValueError: an unsupported sample rate.
        """
        return UtteranceDecoder(self, sample_rate, speech_start_ms)

    def recognize(self, pcm: Pcm16, sample_rate: int) -> Recognition:
        """Transcribe one utterance and decide its intent (:meth:`start`, fed at once).

        Args:
            pcm: int16 array, shape (n,): one utterance, as cut by a VAD.
            sample_rate: Hz, any rate :class:`~switchboard.codecs.Resampler`
                supports (8000 from phone calls, 16000/24000/48000 from
                browsers).

        Returns:
            The :class:`Recognition`.

        Raises:
            TypeError, ValueError: see the module docstring.
        """
        _check(pcm)
        utterance = self.start(sample_rate)
        try:
            utterance.feed(pcm)
            return utterance.finish()
        finally:
            utterance.abandon()

    def evidence(self, pcm: Pcm16, sample_rate: int) -> IntentEvidence:
        """Measure what :meth:`recognize` decides on (slower: a finer bisection).

        Args and Raises: as :meth:`recognize`.
        """
        _check(pcm)
        utterance = self.start(sample_rate)
        try:
            utterance.feed(pcm)
            tail = utterance._resampler.flush() if utterance._resampler is not None else None
            audio, words, _ = utterance._end(tail)
        finally:
            utterance.abandon()
        with self._lock:
            transcript = " ".join(words or ())
            verbatim = self._verbatim(words)
            if verbatim is not None:
                phrases = verbatim[0]
                return IntentEvidence(
                    transcript, True, self._intent_of(phrases), phrases, -EVIDENCE_RANGE
                )
            if not self._phrases or not words:
                return IntentEvidence(transcript, False, None, (), EVIDENCE_RANGE)
            lm_logprobs = self._lm_logprobs(words)
            best = self._run_race(audio, words, lm_logprobs, EVIDENCE_RANGE) or ()
            required = self._required_log_odds(
                audio, words, lm_logprobs, -EVIDENCE_RANGE, EVIDENCE_RANGE, _EVIDENCE_STEPS
            )
            return IntentEvidence(
                transcript, False, self._intent_of(best) if best else None, best, required
            )

    def decide(
        self,
        audio: bytes,
        words: tuple[str, ...] | None,
        posteriors: Sequence[float],
        started: float,
    ) -> Recognition:
        """The decision for an utterance whose open search is done.

        ``audio``: the utterance at 16 kHz with its padding, raw PCM16;
        ``words``/``posteriors``: the open search's; ``started``: the
        ``time.perf_counter()`` at which the finishing work began.
        """
        intent: str | None = None
        confidence = 1.0
        with self._lock:
            verbatim = self._verbatim(words)
            if verbatim is not None:
                phrases, matched = verbatim
                intent = self._intent_of(phrases)
                confidence = float(np.clip(np.mean([posteriors[i] for i in matched]), 0.0, 1.0))
            elif self._phrases and words:  # no words heard: nothing said, no intent
                confidence, intent = self._decide(audio, words)
        return Recognition(
            " ".join(words or ()), intent, confidence, (time.perf_counter() - started) * 1000
        )

    # -- phrases -------------------------------------------------------------

    def _compile(self, intents: Mapping[str, Sequence[str]]) -> dict[tuple[str, ...], str]:
        phrases: dict[tuple[str, ...], str] = {}
        for intent, examples in intents.items():
            if isinstance(examples, str):
                raise TypeError(f"phrases of intent {intent!r} must be a sequence of str")
            for example in examples:
                words = self._spell(intent, example)
                if not words:
                    log.warning("asr.phrase_dropped", intent=intent, phrase=example)
                    continue
                other = phrases.setdefault(words, intent)
                if other != intent:
                    log.warning(
                        "asr.phrase_in_two_intents", phrase=example, kept=other, dropped=intent
                    )
            if not any(i == intent for i in phrases.values()):
                log.warning("asr.intent_without_phrases", intent=intent)
        return phrases

    def _spell(self, intent: str, phrase: str) -> tuple[str, ...]:
        """The phrase's words as the dictionary knows them (see the module docstring)."""
        words: list[str] = []
        for word in re.findall(r"[a-z']+", phrase.lower()):
            word = word.strip("'")
            if not word:
                continue
            if self._race.lookup_word(word) is not None:
                words.append(word)
                continue
            letters = list(word) if word.isalpha() and len(word) <= _MAX_SPELLED else []
            if letters and all(self._race.lookup_word(c) is not None for c in letters):
                log.info("asr.word_spelled", intent=intent, phrase=phrase, word=word)
                words.extend(letters)
            else:
                log.warning("asr.word_skipped", intent=intent, phrase=phrase, word=word)
        return tuple(words)

    def _intent_of(self, phrases: Sequence[str]) -> str | None:
        """The intent covering most words of ``phrases`` (the first on a tie)."""
        if not phrases:
            return None
        cover: dict[str, int] = {}
        for phrase in phrases:
            intent = self._phrases[tuple(phrase.split())]
            cover[intent] = cover.get(intent, 0) + len(phrase.split())
        return max(cover, key=lambda i: cover[i])

    def _verbatim(self, words: tuple[str, ...] | None) -> tuple[tuple[str, ...], list[int]] | None:
        """Phrases the open transcript contains, longest first, with their word indices."""
        if not words or not self._phrases:
            return None
        found: list[str] = []
        matched: list[int] = []
        taken = [False] * len(words)
        for phrase in sorted(self._phrases, key=len, reverse=True):
            n = len(phrase)
            for start in range(len(words) - n + 1):
                span = range(start, start + n)
                if words[start : start + n] == phrase and not any(taken[i] for i in span):
                    found.append(" ".join(phrase))
                    matched.extend(span)
                    for i in span:
                        taken[i] = True
        return (tuple(found), sorted(matched)) if found else None

    # -- decoding ------------------------------------------------------------

    def _lm_logprobs(self, words: Sequence[str]) -> list[float]:
        """Natural-log trigram probabilities of ``words`` and of the end of sentence."""
        history = ["<s>"]
        out = []
        for word in [*words, "</s>"]:
            value = self._lm.prob([word, *reversed(history[-2:])]) * self._ln_base
            out.append(max(value, _LN_FLOOR))
            history.append(word)
        return out

    def _decide(self, audio: bytes, words: tuple[str, ...]) -> tuple[float, str | None]:
        """(confidence, intent) from the race at ``prior_log_odds``."""
        lm_logprobs = self._lm_logprobs(words)
        threshold = self.prior_log_odds
        phrases = self._run_race(audio, words, lm_logprobs, threshold)
        if phrases:
            lo, hi = threshold - _CONFIDENCE_SPAN, threshold
        else:
            lo, hi = threshold, threshold + _CONFIDENCE_SPAN
        required = self._required_log_odds(audio, words, lm_logprobs, lo, hi, _CONFIDENCE_STEPS)
        margin = abs(threshold - required)
        confidence = 1.0 / (1.0 + math.exp(-margin / CONFIDENCE_SCALE))
        return confidence, (self._intent_of(phrases) if phrases else None)

    def _required_log_odds(
        self,
        audio: bytes,
        words: tuple[str, ...],
        lm_logprobs: list[float],
        lo: float,
        hi: float,
        steps: int,
    ) -> float:
        """Bisect for the smallest bonus in [lo, hi] at which the intent branch wins."""
        if self._run_race(audio, words, lm_logprobs, lo):
            return lo
        if not self._run_race(audio, words, lm_logprobs, hi):
            return hi
        for _ in range(steps):
            middle = (lo + hi) / 2
            if self._run_race(audio, words, lm_logprobs, middle):
                hi = middle
            else:
                lo = middle
        return (lo + hi) / 2

    def _run_race(
        self, audio: bytes, words: tuple[str, ...], lm_logprobs: list[float], bonus: float
    ) -> tuple[str, ...] | None:
        """Decode the H0/H1 grammar; the phrases of H1's path if it wins, else None."""
        name = f"race{next(self._names)}"
        decoder = self._race
        fsg = decoder.create_fsg(name, 0, 1, self._race_transitions(words, lm_logprobs, bonus))
        decoder.add_fsg(name, fsg)
        decoder.activate_search(name)
        try:
            decoder.reinit_feat()
            decoder.start_utt()
            decoder.process_raw(audio, full_utt=True)
            decoder.end_utt()
            path = (
                tuple(
                    _ALTERNATE.sub("", s.word) for s in decoder.seg() if not _FILLER.match(s.word)
                )
                if decoder.hyp() is not None
                else None
            )
        finally:
            decoder.activate_search("idle")
            decoder.remove_search(name)
        if path is None or path == words:
            return None
        return self._parse(path)

    def _race_transitions(
        self, words: tuple[str, ...], lm_logprobs: list[float], bonus: float
    ) -> list[tuple[int, int, float] | tuple[int, int, float, str]]:
        """The race grammar: state 0 starts, 1 is final, 2/3 enter/leave H1.

        FSG probabilities are used as given (the binding does not apply the
        language weight), so every language probability is raised to ``lw``
        here; the bonus is put on whichever branch keeps probabilities <= 1.
        """
        lw = self._lw
        transitions: list[tuple[int, int, float] | tuple[int, int, float, str]] = []
        # H0: 0 -> 4 -> 5 ... -> 4+n -> 1, the open transcript.
        transitions.append((0, 4, math.exp(-max(bonus, 0.0))))
        for k, word in enumerate(words):
            transitions.append((4 + k, 5 + k, _prob(lw * lm_logprobs[k]), word))
        transitions.append((4 + len(words), 1, _prob(lw * lm_logprobs[-1])))
        # H1: 0 -> 2, phrases 2 -> ... -> 3, 3 -> 2 (another phrase) or 3 -> 1.
        transitions.append((0, 2, math.exp(min(bonus, 0.0))))
        state = 5 + len(words)
        first = _prob(lw * math.log(1.0 / len(self._phrases)))
        for phrase in self._phrases:
            source = 2
            for i, word in enumerate(phrase):
                target = 3 if i == len(phrase) - 1 else state
                if target == state:
                    state += 1
                transitions.append((source, target, first if i == 0 else 1.0, word))
                source = target
        transitions.append((3, 2, _prob(lw * math.log(_REPEAT_PROB))))
        transitions.append((3, 1, _prob(lw * math.log(1.0 - _REPEAT_PROB))))
        return transitions

    def _parse(self, path: tuple[str, ...]) -> tuple[str, ...] | None:
        """Split an H1 path into phrases (fewest phrases), or None if it is not one."""
        best: list[list[str] | None] = [None] * (len(path) + 1)
        best[0] = []
        for start in range(len(path)):
            done = best[start]
            if done is None:
                continue
            for phrase in self._phrases:
                end = start + len(phrase)
                if path[start:end] == phrase:
                    candidate = [*done, " ".join(phrase)]
                    current = best[end]
                    if current is None or len(candidate) < len(current):
                        best[end] = candidate
        result = best[len(path)]
        return tuple(result) if result else None


def _prob(log_value: float) -> float:
    """exp(log_value), kept above zero (an FSG cannot take probability 0)."""
    return max(math.exp(log_value), 1e-300)
