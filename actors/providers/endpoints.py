"""Where each provider mode connects, and with which credentials, from the environment.

Environment variables (all optional; a mode whose credentials are missing is
reported by :meth:`Endpoints.missing` and skipped with a clear reason):

- ``OPENAI_REALTIME_URL`` (default ``wss://api.openai.com/v1/realtime``) and
  ``OPENAI_API_KEY``: the ``openai-realtime`` mode.
- ``GEMINI_LIVE_URL`` (default Google's ``BidiGenerateContent`` endpoint) and
  ``GEMINI_API_KEY``: the ``gemini-live`` mode.
- ``STT_URL`` (default Deepgram's ``wss://api.deepgram.com/v1/listen``) and
  ``STT_API_KEY`` (or ``DEEPGRAM_API_KEY``): speech-to-text of ``cascaded``.
- ``LLM_BASE_URL`` (default ``https://api.openai.com/v1``), ``LLM_API_KEY``,
  ``LLM_MODEL``: any OpenAI-compatible ``/chat/completions``.
- ``TTS_BASE_URL`` (default ``https://api.openai.com/v1``; a Deepgram URL
  selects ``/v1/speak``), ``TTS_API_KEY``, ``TTS_MODEL``, ``TTS_VOICE``.

A key is required only where the URL is the provider's public default: a
URL of your own (a fake, vLLM, Ollama) may need none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

OPENAI_REALTIME_URL: Final = "wss://api.openai.com/v1/realtime"
GEMINI_LIVE_URL: Final = (
    "wss://generativelanguage.googleapis.com/ws/"
    "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
)
DEEPGRAM_LISTEN_URL: Final = "wss://api.deepgram.com/v1/listen"
OPENAI_API_BASE: Final = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Endpoints:
    """Provider URLs and credentials (see the module docstring for the variables)."""

    openai_realtime_url: str = OPENAI_REALTIME_URL
    openai_api_key: str | None = None
    gemini_live_url: str = GEMINI_LIVE_URL
    gemini_api_key: str | None = None
    stt_url: str = DEEPGRAM_LISTEN_URL
    stt_api_key: str | None = None
    llm_base_url: str = OPENAI_API_BASE
    llm_api_key: str | None = None
    llm_model: str = "gpt-4o-mini"
    tts_base_url: str = OPENAI_API_BASE
    tts_api_key: str | None = None
    tts_model: str = "gpt-4o-mini-tts"
    tts_voice: str = "alloy"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Endpoints:
        def get(name: str, default: str) -> str:
            return env.get(name) or default

        return cls(
            openai_realtime_url=get("OPENAI_REALTIME_URL", OPENAI_REALTIME_URL),
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            gemini_live_url=get("GEMINI_LIVE_URL", GEMINI_LIVE_URL),
            gemini_api_key=env.get("GEMINI_API_KEY") or None,
            stt_url=get("STT_URL", DEEPGRAM_LISTEN_URL),
            stt_api_key=env.get("STT_API_KEY") or env.get("DEEPGRAM_API_KEY") or None,
            llm_base_url=get("LLM_BASE_URL", OPENAI_API_BASE).rstrip("/"),
            llm_api_key=env.get("LLM_API_KEY") or None,
            llm_model=get("LLM_MODEL", cls.llm_model),
            tts_base_url=get("TTS_BASE_URL", OPENAI_API_BASE).rstrip("/"),
            tts_api_key=env.get("TTS_API_KEY") or None,
            tts_model=get("TTS_MODEL", cls.tts_model),
            tts_voice=get("TTS_VOICE", cls.tts_voice),
        )

    def missing(self, mode: str) -> tuple[str, ...]:
        """The environment variables ``mode`` needs and does not have (empty: ready)."""
        needs: list[tuple[str, str, str | None]] = []  # (variable, url, key)
        if mode == "openai-realtime":
            needs.append(("OPENAI_API_KEY", self.openai_realtime_url, self.openai_api_key))
        elif mode == "gemini-live":
            needs.append(("GEMINI_API_KEY", self.gemini_live_url, self.gemini_api_key))
        elif mode == "cascaded":
            needs += [
                ("STT_API_KEY", self.stt_url, self.stt_api_key),
                ("LLM_API_KEY", self.llm_base_url, self.llm_api_key),
                ("TTS_API_KEY", self.tts_base_url, self.tts_api_key),
            ]
        return tuple(var for var, url, key in needs if key is None and _is_public_default(url))


_PUBLIC_HOSTS: Final = (
    "api.openai.com",
    "generativelanguage.googleapis.com",
    "api.deepgram.com",
)


def _is_public_default(url: str) -> bool:
    host = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host in _PUBLIC_HOSTS
