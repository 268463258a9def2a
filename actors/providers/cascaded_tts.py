"""The ``cascaded`` provider's voice: OpenAI-compatible or Deepgram text-to-speech, streamed.

- OpenAI-compatible ``POST {TTS_BASE_URL}/audio/speech`` with
  ``response_format: "pcm"`` (PCM16 little-endian, 24 kHz mono);
- Deepgram ``POST /v1/speak?model=..&encoding=linear16&sample_rate=24000&container=none``
  when the base URL is Deepgram's (host ``*.deepgram.com``, or a path ending
  in ``/speak``).

The body is read as it streams and handed on in whole samples; the pipeline
converts it to the caller's format. Failures as for the thinker
(:func:`~.cascaded_llm.http_failures`).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import httpx

from ..messages import AudioChunk
from ..pipeline import Play
from ..tape import CallTape
from .cascaded_llm import check_status, http_failures
from .endpoints import Endpoints

__all__ = ["DEEPGRAM_TTS_MODEL", "TTS_SAMPLE_RATE", "SpeechVoice"]

TTS_SAMPLE_RATE: Final = 24000
DEEPGRAM_TTS_MODEL: Final = "aura-2-thalia-en"


class SpeechVoice:
    """OpenAI-compatible ``/audio/speech`` (PCM) or Deepgram ``/v1/speak`` (linear16).

    ``tape.provider(source, data)`` keeps each piece of the streamed body as it
    arrives (bytes, as read); nowhere by default.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str | None,
        model: str,
        voice: str,
        *,
        tape: CallTape | None = None,
        source: str = "cascaded#1/tts",
    ) -> None:
        self.tape = tape if tape is not None else CallTape()
        self.source = source
        self.http = http
        base = base_url.rstrip("/")
        host = urlsplit(base).hostname or ""
        self.deepgram = host.endswith("deepgram.com") or base.endswith("/speak")
        if self.deepgram:
            model = DEEPGRAM_TTS_MODEL if model == Endpoints.tts_model else model
            query = urlencode(
                {
                    "model": model,
                    "encoding": "linear16",
                    "sample_rate": TTS_SAMPLE_RATE,
                    "container": "none",
                }
            )
            self.url = f"{base if base.endswith('/speak') else base + '/speak'}?{query}"
            self.headers = {"Authorization": f"Token {api_key}"} if api_key else {}
        else:
            self.url = base + "/audio/speech"
            self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self.voice = voice

    async def __call__(self, text: str, play: Play) -> None:
        if not text.strip():
            return
        body: dict[str, Any] = (
            {"text": text}
            if self.deepgram
            else {"model": self.model, "input": text, "voice": self.voice, "response_format": "pcm"}
        )
        carry = b""
        async with (
            http_failures("TTS"),
            self.http.stream("POST", self.url, json=body, headers=self.headers) as response,
        ):
            await check_status(response, "TTS")
            async for data in response.aiter_bytes():
                self.tape.provider(self.source, data)
                data = carry + data
                cut = len(data) - len(data) % 2
                carry = data[cut:]
                if cut:
                    await play(AudioChunk(data[:cut], "pcm16", TTS_SAMPLE_RATE))
