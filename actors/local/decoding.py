"""PocketSphinx decoders of one process, and one utterance decoded as its audio arrives.

:class:`Decoders` holds a process's decoders (shared by every agent's
:class:`~.asr.Recognizer`); :class:`UtteranceDecoder` streams one
utterance through an open-vocabulary search and hands the finished search
to its recognizer's intent race. Why the search is normalized with the
cepstral mean of the first :data:`CMN_WINDOW_MS` of speech, and how the race
decides: see :mod:`.asr`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import threading
import time
from typing import TYPE_CHECKING, Final

import numpy as np
from pocketsphinx import Decoder

from switchboard.codecs import Pcm16, Resampler

from .speech import Recognition

if TYPE_CHECKING:
    from .asr import Recognizer

__all__ = ["CMN_WINDOW_MS", "DECODER_RATE", "PAD_MS", "Decoders", "UtteranceDecoder"]

DECODER_RATE: Final = 16000
"""Sample rate (Hz) of the acoustic model; other rates are resampled to it."""
PAD_MS: Final = 300
"""Silence (ms) added before and after each utterance: the decoder needs some."""
CMN_WINDOW_MS: Final = 600
"""Speech (ms, from its start) whose cepstral mean normalizes the whole utterance."""

_BYTES_PER_MS: Final = DECODER_RATE * 2 // 1000
_FILLER: Final = re.compile(r"^(<.*>|\[.*\]|\+.*\+|\(NULL\))$")
_ALTERNATE: Final = re.compile(r"\(\d+\)$")
# Wide beams for the race: with the defaults the phrase branch is often pruned
# before the end and the search returns no path (measured on the eSpeak lines).
_RACE_BEAMS: Final = {"beam": 1e-80, "pbeam": 1e-80, "wbeam": 1e-60}


class Decoders:
    """The PocketSphinx decoders of one process, shared by every agent's recognizer.

    One race decoder (grammar searches, one at a time, under :attr:`lock`) and
    a free list of open-search decoders, one per utterance in progress: an
    open decoder holds an utterance's search state from its first audio to
    its end, so utterances decoded at once need one each (built on demand,
    about 0.3 s and 90 MB each; kept for reuse).

    Raises:
        RuntimeError: PocketSphinx cannot load its model.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._idle: list[Decoder] = [self._new_open()]
        first = self._idle[0]
        self.lm = first.get_lm()
        self.lw = float(first.config["lw"])
        self.ln_base = math.log(float(first.config["logbase"]))
        self.race = Decoder(
            samprate=DECODER_RATE, loglevel="FATAL", lm=None, bestpath=False, **_RACE_BEAMS
        )
        self.race.add_fsg("idle", self.race.create_fsg("idle", 0, 1, [(0, 1, 1.0, "a")]))
        self.race.activate_search("idle")
        self._first = first  # the LM object above belongs to it: it is never dropped
        self._built = 1

    @staticmethod
    def _new_open() -> Decoder:
        return Decoder(samprate=DECODER_RATE, loglevel="FATAL")

    @property
    def idle_open(self) -> int:
        """Open-search decoders built and not in use."""
        with self.lock:
            return len(self._idle)

    @property
    def built_open(self) -> int:
        """Open-search decoders in this process, idle or in use."""
        with self.lock:
            return self._built

    def take_open(self) -> Decoder:
        """An open-search decoder for one utterance (built if none is idle)."""
        with self.lock:
            if self._idle:
                return self._idle.pop()
            self._built += 1
        return self._new_open()

    def give_back(self, decoder: Decoder) -> None:
        with self.lock:
            self._idle.append(decoder)

    def ensure_built(self, count: int) -> None:
        """Build open-search decoders until ``count`` exist (idle or in use)."""
        while self.built_open < count:
            decoder = self._new_open()
            with self.lock:
                self._built += 1
                self._idle.append(decoder)

    def trim(self, count: int) -> None:
        """Drop idle open-search decoders while more than ``count`` exist (memory back)."""
        with self.lock:
            keep = [d for d in self._idle if d is self._first]
            spare = [d for d in self._idle if d is not self._first]
            while spare and self._built > max(count, 1):
                spare.pop()
                self._built -= 1
            self._idle = keep + spare

    def cepstral_mean(self, audio: bytes) -> str:
        """The cepstral mean of raw 16 kHz PCM16 ``audio`` as PocketSphinx's batch CMN
        computes it (frames of zero energy, such as the padding, are skipped), in
        the comma-separated form of ``Decoder.set_cmn``. Features only: no search."""
        with self.lock:
            race = self.race
            race.reinit_feat()
            race.start_utt()
            race.process_raw(audio, no_search=True, full_utt=True)
            race.end_utt()
            return str(race.get_cmn(False))


class UtteranceDecoder:
    """One utterance decoded as its audio arrives (see the module docstring).

    Made by :meth:`Recognizer.start`; feed it with :meth:`feed`, end it with
    :meth:`finish` (or :meth:`abandon`). :meth:`guess` answers as if the
    utterance ended now, so the finishing work can run while a VAD is still
    waiting to be sure; if more audio follows, the open search starts again
    from the top (the result is the same as without the guess). Not
    thread-safe: one feeder at a time.
    """

    def __init__(self, recognizer: Recognizer, sample_rate: int, speech_start_ms: float) -> None:
        self._recognizer = recognizer
        self._resampler = (
            Resampler(sample_rate, DECODER_RATE) if sample_rate != DECODER_RATE else None
        )
        self.sample_rate = sample_rate
        self._audio = bytearray(_silence(PAD_MS))
        self._cmn_end = len(self._audio) + round(
            (max(0.0, speech_start_ms) + CMN_WINDOW_MS) * _BYTES_PER_MS
        )
        self._mean: str | None = None  # the window's cepstral mean, once it is complete
        self._decoder: Decoder | None = None  # an open search in progress
        self._fed = 0  # bytes of _audio given to it
        self._guess: tuple[int, Recognition] | None = None  # (audio length then, result)
        self._done = False

    def feed(self, pcm: Pcm16) -> None:
        """Take the next audio: int16 array, shape (n,), at the stream's rate.

        Raises:
            TypeError: ``pcm`` is not int16. ValueError: not mono.
            RuntimeError: the utterance was finished or abandoned, or PocketSphinx failed.
        """
        _check(pcm)
        self._check_open()
        self._audio += self._resampled(pcm)
        if self._mean is None and len(self._audio) >= self._cmn_end:
            window = bytes(self._audio[: self._cmn_end])
            self._mean = self._recognizer.decoders.cepstral_mean(window)
        self._decode()

    def guess(self) -> Recognition:
        """The recognition as if the utterance ended with the audio fed so far.

        The utterance stays open: :meth:`finish` without more audio returns
        this result at once; more audio makes the next :meth:`feed` decode
        the utterance again from its start.

        Raises:
            RuntimeError: the utterance was finished, or PocketSphinx failed.
        """
        self._check_open()
        if self._guess is not None and self._guess[0] == len(self._audio):
            return self._guess[1]
        started = time.perf_counter()
        tail = copy.deepcopy(self._resampler).flush() if self._resampler is not None else None
        recognition = self._recognizer.decide(*self._end(tail), started)
        self._guess = (len(self._audio), recognition)
        return recognition

    def finish(self) -> Recognition:
        """End the utterance: its transcript and intent (see :meth:`Recognizer.recognize`).

        Raises:
            RuntimeError: finished twice, or PocketSphinx failed.
        """
        self._check_open()
        try:
            if self._guess is not None and self._guess[0] == len(self._audio):
                return self._guess[1]
            started = time.perf_counter()
            tail = self._resampler.flush() if self._resampler is not None else None
            return self._recognizer.decide(*self._end(tail), started)
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Drop the utterance (its decoder goes back to the pool); safe to call twice."""
        self._done = True
        self._release()

    def _end(self, tail: Pcm16 | None) -> tuple[bytes, tuple[str, ...] | None, list[float]]:
        """End the open search on the audio so far, ``tail`` (the resampler's last
        samples) and the padding: (that 16 kHz audio, its words, their posteriors).
        The search is over afterwards (its decoder back in the pool)."""
        audio = bytes(self._audio)
        ending = (_pcm_bytes(tail) if tail is not None else b"") + _silence(PAD_MS)
        decoders = self._recognizer.decoders
        decoder: Decoder | None = None
        ended = False
        try:
            if self._mean is None:  # shorter than the window: decode it whole
                decoder = self._decoder = decoders.take_open()
                decoder.reinit_feat()
                decoder.start_utt()
                decoder.process_raw(audio + ending, full_utt=True)
            else:
                self._decode()
                decoder = self._require_decoder()
                decoder.process_raw(ending, full_utt=False)
            decoder.end_utt()
            ended = True
            words, posteriors = _words(decoder)
        finally:
            self._decoder = None
            if decoder is not None:
                if not ended:
                    with contextlib.suppress(RuntimeError):
                        decoder.end_utt()
                decoders.give_back(decoder)
        return audio + ending, words, posteriors

    def _require_decoder(self) -> Decoder:
        assert self._decoder is not None
        return self._decoder

    def _check_open(self) -> None:
        if self._done:
            raise RuntimeError("this utterance is finished")

    def _resampled(self, pcm: Pcm16) -> bytes:
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        return _pcm_bytes(pcm)

    def _decode(self) -> None:
        """Bring the open search up to the audio fed (starting it, or again after a guess)."""
        if self._mean is None:
            return
        if self._decoder is None:
            decoder = self._decoder = self._recognizer.decoders.take_open()
            decoder.reinit_feat()  # the noise tracker would otherwise carry over utterances
            decoder.set_cmn(self._mean)
            decoder.start_utt()
            self._fed = 0
        if self._fed < len(self._audio):
            self._decoder.process_raw(bytes(self._audio[self._fed :]), full_utt=False)
            self._fed = len(self._audio)

    def _release(self) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            decoder.end_utt()
            self._recognizer.decoders.give_back(decoder)


def _check(pcm: Pcm16) -> None:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        raise TypeError("pcm must be a numpy int16 array of shape (n,)")
    if pcm.ndim != 1:
        raise ValueError(f"pcm must be mono with shape (n,), got shape {pcm.shape}")


def _pcm_bytes(pcm: Pcm16) -> bytes:
    return pcm.astype("<i2", copy=False).tobytes()


def _silence(ms: int) -> bytes:
    return bytes(ms * _BYTES_PER_MS)


def _words(decoder: Decoder) -> tuple[tuple[str, ...] | None, list[float]]:
    """The finished search's words (None if it found no path) and their posteriors."""
    if decoder.hyp() is None:
        return None, []
    words: list[str] = []
    posteriors: list[float] = []
    for seg in decoder.seg():
        if not _FILLER.match(seg.word):
            words.append(_ALTERNATE.sub("", seg.word))
            posteriors.append(float(seg.prob))
    return tuple(words), posteriors
