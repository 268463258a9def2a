"""What the local provider asks of its speech engines, in the main process.

Recognition (PocketSphinx) and synthesis (eSpeak NG) run in worker
processes (:mod:`.workers`, :mod:`.speech_process`); the actors see them only
through :class:`SpeechService`, so a test can put a fake in their place (a
slow recognizer on Trio's MockClock, say). Nothing here imports PocketSphinx.

- :class:`Grammar`: what an agent's recognizer is built from (its intents).
- :class:`Recognition`: the result for one utterance.
- :class:`RecognitionStream`: one utterance, fed while the caller speaks.
- :class:`RecognitionSession`: one call's recognition (its utterances' streams).
- :class:`Synthesizer`: synthesis; :class:`SpeechService`: sessions and synthesis.
- :class:`SpeechWorkerLost`: the worker serving a stream is gone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, final

from switchboard.orchestrator.errors import ProviderError

if TYPE_CHECKING:  # worker processes import this module: keep it light
    from switchboard.codecs import Pcm16

    from ..context import AudioFormat
    from ..messages import AudioChunk

__all__ = [
    "DEFAULT_PRIOR_LOG_ODDS",
    "Grammar",
    "Recognition",
    "RecognitionSession",
    "RecognitionStream",
    "SpeechService",
    "SpeechWorkerLost",
    "Synthesizer",
]

DEFAULT_PRIOR_LOG_ODDS: Final = 45.0
"""Bonus (lw-scaled nats) of the intent branch; see :mod:`.asr`."""


@final
@dataclass(frozen=True, slots=True)
class Grammar:
    """What a recognizer understands: the agent's intents and their example phrases.

    Attributes:
        intents: ``(intent name, (phrase, ...))`` pairs in the agent's order
            (plain text, any case; words outside ``[a-z']`` are separators).
        prior_log_odds: bonus of the intent branch (see :mod:`.asr`).

    Hashable, so a worker process keeps one recognizer per grammar.
    """

    intents: tuple[tuple[str, tuple[str, ...]], ...] = ()
    prior_log_odds: float = DEFAULT_PRIOR_LOG_ODDS

    @classmethod
    def of(
        cls,
        intents: Mapping[str, Sequence[str]],
        *,
        prior_log_odds: float = DEFAULT_PRIOR_LOG_ODDS,
    ) -> Grammar:
        """A grammar from intent name -> phrases.

        Raises:
            TypeError: an intent's phrases are a single str, not a sequence of str.
        """
        pairs = []
        for name, phrases in intents.items():
            if isinstance(phrases, str):
                raise TypeError(f"phrases of intent {name!r} must be a sequence of str")
            pairs.append((name, tuple(phrases)))
        return cls(tuple(pairs), float(prior_log_odds))

    def as_mapping(self) -> dict[str, tuple[str, ...]]:
        return dict(self.intents)


@final
@dataclass(frozen=True, slots=True)
class Recognition:
    """The result for one utterance.

    Attributes:
        transcript: what the open search heard, lower case, words separated
            by single spaces ("" when it heard no words).
        intent: the agent intent the utterance expresses, or None.
        confidence: in [0, 1], how sure the decision (including None) is: 0.5
            at the threshold, towards 1 away from it (a logistic of the
            log-odds margin); for a phrase heard verbatim by the open search,
            the mean posterior of its words.
        decode_ms: decoding time after the end of the utterance (the work
            that delays the answer), ms.
    """

    transcript: str
    intent: str | None
    confidence: float
    decode_ms: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be within [0, 1], got {self.confidence}")
        if self.decode_ms < 0:
            raise ValueError(f"decode_ms must not be negative, got {self.decode_ms}")


class SpeechWorkerLost(ProviderError):  # noqa: N818 - past tense, like ProviderFailed
    """The speech worker process serving a stream died, hung and was killed, or retired.

    The stream's decoder state went with it: the utterance cannot be finished.
    The local provider reports it as ``ProviderFailed`` (kind ``crash``).
    """


class RecognitionStream(Protocol):
    """One caller utterance, decoded as it is fed.

    Feed the utterance's audio in order while the caller speaks, then
    :meth:`finish` once it has ended; or :meth:`abandon` it.
    """

    async def feed(self, pcm: Pcm16) -> None:
        """Decode the next audio: int16 array, shape (n,), at the stream's rate.

        Raises:
            SpeechWorkerLost: the worker serving the stream is gone.
        """
        ...

    async def guess(self, last: Pcm16 | None = None) -> Recognition:
        """The recognition if the utterance ended with ``last`` (if any); it stays open.

        For the end of speech the VAD is not yet sure of: :meth:`finish`
        without more audio then answers at once; more audio continues the
        utterance (the worker decodes it again from its start).

        Raises:
            SpeechWorkerLost: the worker serving the stream is gone.
        """
        ...

    async def finish(self, last: Pcm16 | None = None) -> Recognition:
        """The utterance has ended with ``last`` (if any): its transcript and intent.

        Raises:
            SpeechWorkerLost: the worker serving the stream is gone.
        """
        ...

    def abandon(self) -> None:
        """Drop the utterance (never waits; safe after :meth:`finish` and twice)."""
        ...


class RecognitionSession(Protocol):
    """One call's speech recognition: its utterances, one stream each, in order.

    Opening a session gets a recognizer ready for the call (in a worker: its
    models and a decoder for the call, built while the greeting plays), so
    the caller's first words never wait for a model to load.
    """

    def open_stream(self, sample_rate: int, *, speech_start_ms: float = 0.0) -> RecognitionStream:
        """A stream for one utterance at ``sample_rate`` Hz (nothing runs until it is fed).

        ``speech_start_ms``: where the speech begins in the utterance's audio
        (after the VAD's pre-roll), ms.

        Raises:
            ValueError: a sample rate the recognizer does not support.
        """
        ...

    def close(self) -> None:
        """The call is over: what was kept ready for it may go (never waits; idempotent)."""
        ...


class Synthesizer(Protocol):
    """Speech synthesis (eSpeak NG) somewhere off the event loop."""

    async def synthesize(self, text: str, voice: str, fmt: AudioFormat) -> AudioChunk:
        """``text`` spoken by eSpeak NG voice ``voice``, as one chunk in ``fmt``.

        Raises:
            ValueError: blank text or an unknown voice.
            SpeechWorkerLost: the worker died while synthesizing.
        """
        ...


class SpeechService(Synthesizer, Protocol):
    """Speech recognition and synthesis for the local provider's calls."""

    def open_session(self, grammar: Grammar) -> RecognitionSession:
        """Recognition of ``grammar``'s intents for one call (never waits)."""
        ...
