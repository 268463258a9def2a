"""What the local provider keeps per agent: its grammar and its speech, made in a worker.

An agent's recognizer lives in the speech worker processes (built there on
first use, :mod:`.speech_process`); this process keeps only the agent's
:class:`~.speech.Grammar` (its intents' phrases and its knowledge questions,
:func:`.policy.knowledge_intents`) and the audio its voice has spoken, in the
caller's formats. The greeting, the no-match reply and the failover apology
are pinned (:meth:`LocalAssets.prepare`, at server start): the apology plays
when every provider is down, so it must not need a worker then, and the
greeting starts a call within milliseconds. Other replies are cached, most
recently used first: a receptionist says the same sentences often.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Final

from switchboard.orchestrator.agents import AgentSpec

from ..consent import spoken_greeting
from ..context import AudioFormat
from ..messages import AudioChunk
from .policy import knowledge_intents
from .speech import DEFAULT_PRIOR_LOG_ODDS, Grammar, SpeechService, Synthesizer
from .workers import SpeechWorkers

__all__ = [
    "APOLOGY_END",
    "APOLOGY_TRANSFER",
    "AssetRegistry",
    "LocalAssets",
    "agent_grammar",
    "apology_text",
]

APOLOGY_TRANSFER = "I'm sorry, I'm having technical trouble. Let me put you through to a colleague."
APOLOGY_END = (
    "I'm sorry, I'm having technical trouble and can't help right now. "
    "Please call back in a few minutes. Goodbye."
)
"""What a caller hears when every provider has failed (failover gave up)."""


def apology_text(*, transfer: bool) -> str:
    return APOLOGY_TRANSFER if transfer else APOLOGY_END


LANGUAGE_WEIGHT: Final = 6.5
"""PocketSphinx's language weight ``lw`` for its US English model (:mod:`.asr`)."""


def agent_grammar(agent: AgentSpec) -> Grammar:
    """What the agent's recognizer understands: its intents' phrases, then its knowledge
    questions (:func:`.policy.knowledge_intents`).

    The recognizer's prior is uniform over the phrases (:mod:`.asr`), so each
    question added would make every intent phrase less likely a priori and move
    calibrated decisions towards "no intent". The intent branch's bonus is raised
    by ``lw * ln(all phrases / intent phrases)`` to make up for it: an intent phrase
    keeps the prior it had without knowledge, and a question gets the same.
    """
    intents = {i.name: i.phrases for i in agent.intents}
    questions = knowledge_intents(agent)
    own = sum(len(p) for p in intents.values())
    bonus = DEFAULT_PRIOR_LOG_ODDS
    if own and questions:
        bonus += LANGUAGE_WEIGHT * math.log((own + len(questions)) / own)
    return Grammar.of(intents | questions, prior_log_odds=bonus)


class LocalAssets:
    """One agent's grammar and spoken audio (use from the event loop: no locks).

    Args:
        agent: the agent.
        speech: where synthesis (and the agent's recognition) runs.
        speech_cache_size: replies kept besides the pinned ones.
    """

    def __init__(
        self, agent: AgentSpec, speech: SpeechService, *, speech_cache_size: int = 64
    ) -> None:
        self.agent = agent
        self.speech_service = speech
        self.grammar = agent_grammar(agent)
        self._cache: OrderedDict[tuple[str, AudioFormat], AudioChunk] = OrderedDict()
        self._cache_size = speech_cache_size
        self._pinned: dict[tuple[str, AudioFormat], AudioChunk] = {}

    def cached(self, text: str, fmt: AudioFormat) -> AudioChunk | None:
        """``text`` in ``fmt`` if it was spoken before (never waits)."""
        key = (text, fmt)
        chunk = self._pinned.get(key)
        if chunk is None:
            chunk = self._cache.get(key)
            if chunk is not None:
                self._cache.move_to_end(key)
        return chunk

    async def speech(self, text: str, fmt: AudioFormat) -> AudioChunk:
        """``text`` spoken in the agent's voice, in ``fmt`` (cached; synthesized in a worker).

        Raises:
            ValueError: blank text or an unknown voice.
            SpeechWorkerLost: the worker died while synthesizing.
        """
        chunk = self.cached(text, fmt)
        if chunk is None:
            chunk = await self.speech_service.synthesize(text, self.agent.voice, fmt)
            self._cache[(text, fmt)] = chunk
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return chunk

    def prepared_apology(self, fmt: AudioFormat) -> AudioChunk | None:
        """The failover apology in ``fmt`` if it was made ahead (never waits)."""
        return self._pinned.get((self._apology_text(), fmt))

    async def apology(self, fmt: AudioFormat) -> AudioChunk:
        """The failover apology in ``fmt``, kept for the life of the assets.

        Made with the local voice when the agent is prepared, so it plays even
        when every provider is down; made now (in a worker) if it was not.
        """
        return await self._pin(self._apology_text(), fmt)

    async def prepare(self, fmt: AudioFormat, speech: Synthesizer | None = None) -> None:
        """Make the greeting (also after the consent line, when the agent may announce
        its recording), the no-match reply and the apology in ``fmt`` ahead, and pin
        them; with ``speech`` if given (a server's start: :func:`.workers.one_off_synthesis`),
        else with the agent's speech service."""
        texts = [self.agent.greeting, self.agent.no_match_reply]
        recording = self.agent.recording
        if recording.may_announce:  # the greeting a caller told of the recording hears
            texts.append(spoken_greeting(self.agent.greeting, recording.consent_line))
        for text in texts:
            if text.strip():
                await self._pin(text, fmt, speech)
        await self._pin(self._apology_text(), fmt, speech)

    def _apology_text(self) -> str:
        return apology_text(transfer=self.agent.transfer_number is not None)

    async def _pin(
        self, text: str, fmt: AudioFormat, speech: Synthesizer | None = None
    ) -> AudioChunk:
        key = (text, fmt)
        chunk = self._pinned.get(key)
        if chunk is None:
            chunk = self._cache.pop(key, None) or await (speech or self.speech_service).synthesize(
                text, self.agent.voice, fmt
            )
            self._pinned[key] = chunk
        return chunk


class AssetRegistry:
    """Assets per agent spec, made on first use and reused while the spec is unchanged.

    Args:
        speech: the process's speech service (by default, a pool of
            :class:`~.workers.SpeechWorkers`, one per core, started on first use).
    """

    def __init__(self, speech: SpeechService | None = None) -> None:
        self.speech: SpeechService = speech if speech is not None else SpeechWorkers()
        self._assets: dict[str, LocalAssets] = {}

    def peek(self, agent: AgentSpec) -> LocalAssets | None:
        """The assets already made for ``agent``, or None."""
        return self._assets.get(_spec_key(agent))

    def get(self, agent: AgentSpec) -> LocalAssets:
        """The agent's assets (cheap to make: nothing is loaded or synthesized here)."""
        key = _spec_key(agent)
        assets = self._assets.get(key)
        if assets is None:
            assets = self._assets[key] = LocalAssets(agent, self.speech)
        return assets


def _spec_key(agent: AgentSpec) -> str:
    return json.dumps(agent.to_json(), sort_keys=True)
