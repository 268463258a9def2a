"""What the local provider prepares once per agent and shares between that agent's calls.

Building a PocketSphinx recognizer takes a fraction of a second, and a
greeting synthesized per call would delay the first audio, so both are made
ahead (at server start and when an agent is applied) and cached here. Speech
for replies is cached too: a receptionist says the same sentences often.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict

import numpy as np

from switchboard.codecs import pcm16_to_bytes
from switchboard.orchestrator.agents import AgentSpec

from ..audio_convert import ToFormat
from ..context import AudioFormat
from ..messages import AudioChunk
from . import tts
from .asr import Recognizer

APOLOGY_TRANSFER = "I'm sorry, I'm having technical trouble. Let me put you through to a colleague."
APOLOGY_END = (
    "I'm sorry, I'm having technical trouble and can't help right now. "
    "Please call back in a few minutes. Goodbye."
)
"""What a caller hears when every provider has failed (failover gave up)."""


def apology_text(*, transfer: bool) -> str:
    return APOLOGY_TRANSFER if transfer else APOLOGY_END


def render(pcm: np.ndarray, src_rate: int, fmt: AudioFormat) -> AudioChunk:
    """Convert PCM16 at ``src_rate`` into one chunk of the caller side's format."""
    convert = ToFormat(fmt)
    pieces = (convert.convert(AudioChunk(pcm16_to_bytes(pcm), "pcm16", src_rate)), convert.flush())
    return AudioChunk(
        b"".join(p.data for p in pieces if p is not None), fmt.encoding, fmt.sample_rate
    )


class LocalAssets:
    """One agent's recognizer and speech cache (thread-safe)."""

    def __init__(self, agent: AgentSpec, *, speech_cache_size: int = 64) -> None:
        self.agent = agent
        self.recognizer = Recognizer({i.name: i.phrases for i in agent.intents})
        self._cache: OrderedDict[tuple[str, AudioFormat], AudioChunk] = OrderedDict()
        self._cache_size = speech_cache_size
        self._pinned: dict[tuple[str, AudioFormat], AudioChunk] = {}
        self._lock = threading.Lock()

    def speech(self, text: str, fmt: AudioFormat) -> AudioChunk:
        """``text`` spoken in the agent's voice, in ``fmt`` (cached; call from a thread)."""
        key = (text, fmt)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        pcm = tts.synthesize(text, voice=self.agent.voice)
        chunk = render(pcm, tts.SAMPLE_RATE, fmt)
        with self._lock:
            self._cache[key] = chunk
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return chunk

    def prepared_apology(self, fmt: AudioFormat) -> AudioChunk | None:
        """The apology in ``fmt`` if it was made ahead (no synthesis, safe on the event loop)."""
        text = apology_text(transfer=self.agent.transfer_number is not None)
        with self._lock:
            return self._pinned.get((text, fmt))

    def apology(self, fmt: AudioFormat) -> AudioChunk:
        """The failover apology in ``fmt``, kept for the life of the assets (call from a thread).

        It is made when the agent is prepared, with the local voice, so it
        plays even when every provider is down.
        """
        text = apology_text(transfer=self.agent.transfer_number is not None)
        key = (text, fmt)
        with self._lock:
            chunk = self._pinned.get(key)
        if chunk is None:
            chunk = render(tts.synthesize(text, voice=self.agent.voice), tts.SAMPLE_RATE, fmt)
            with self._lock:
                self._pinned[key] = chunk
        return chunk

    def prepare(self, fmt: AudioFormat) -> None:
        """Synthesize the greeting, the no-match reply and the apology for ``fmt`` ahead."""
        self.speech(self.agent.greeting, fmt)
        self.speech(self.agent.no_match_reply, fmt)
        self.apology(fmt)


class AssetRegistry:
    """Assets per agent spec, built on first use and reused while the spec is unchanged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._assets: dict[str, LocalAssets] = {}

    def peek(self, agent: AgentSpec) -> LocalAssets | None:
        """The assets already built for ``agent``, or None (never builds: no waiting)."""
        with self._lock:
            return self._assets.get(_spec_key(agent))

    def get(self, agent: AgentSpec) -> LocalAssets:
        key = _spec_key(agent)
        with self._lock:
            assets = self._assets.get(key)
        if assets is None:
            assets = LocalAssets(agent)
            with self._lock:
                assets = self._assets.setdefault(key, assets)
        return assets


def _spec_key(agent: AgentSpec) -> str:
    return json.dumps(agent.to_json(), sort_keys=True)
