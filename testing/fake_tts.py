"""A fake text-to-speech server: OpenAI ``POST /v1/audio/speech`` and Deepgram ``POST /v1/speak``.

It speaks the text it is given with eSpeak NG
(:func:`switchboard.testing.speech.speak_bytes` at 24 kHz), streamed in
``chunk_ms`` pieces every ``chunk_interval_ms``:

- OpenAI (``/audio/speech``): JSON ``{model, input, voice, response_format}``;
  ``response_format`` must be ``pcm`` (raw PCM16 little-endian, 24 kHz mono,
  as OpenAI documents it); ``input`` is required.
- Deepgram (``/speak``): JSON ``{text}``, query ``model``, ``encoding``
  (``linear16`` only here), ``sample_rate`` (any rate the resampler supports,
  default 24000) and ``container`` (``none``: raw samples; otherwise a WAV
  header comes first, Deepgram's default).

Faults (``connection`` 0 or the request's number, 1 for the first; ``turn``
the request's number too, so ``turn: 1`` is the first sentence synthesized,
usually the greeting's): ``http_5xx`` answers with ``status``;
``error_event`` answers 200 and ends the body with an error after the first
chunk (the connection is cut, as a failing upstream does); ``stall`` sends
``after_audio_ms`` of audio and then nothing; ``drop`` cuts the connection
after ``after_messages`` chunks; ``slow_first_byte`` waits ``delay_ms``
before the first chunk.

In tests: ``httpx.AsyncClient(transport=httpx.MockTransport(fake.handler))``.
By hand: ``python -m switchboard.testing cascaded`` (with the fake Deepgram and chat).
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import trio

from .script import Script
from .speech import speak_bytes

__all__ = ["FakeTTS"]

SAMPLE_RATE = 24000


@dataclass
class FakeTTS:
    """The fake (see the module docstring); ``texts`` lists what it was asked to say."""

    script: Script = field(default_factory=Script)
    chunk_ms: float = 100.0
    chunk_interval_ms: float = 0.0
    texts: list[str] = field(default_factory=list)
    headers: list[httpx.Headers] = field(default_factory=list)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        """Answer one HTTP request (an ``httpx.MockTransport`` handler)."""
        path = request.url.path.rstrip("/")
        if request.method != "POST" or not path.endswith(("/audio/speech", "/speak")):
            return _error(404, f"no route for {request.method} {request.url.path}")
        try:
            body = json.loads(request.content)
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        rate, header = SAMPLE_RATE, b""
        if path.endswith("/speak"):
            text = body.get("text")
            query = request.url.params
            if query.get("encoding", "linear16") != "linear16":
                return _error(400, "this fake only speaks encoding=linear16")
            try:
                rate = int(query.get("sample_rate", SAMPLE_RATE))
            except ValueError:
                return _error(400, "sample_rate must be an integer")
        else:
            text = body.get("input")
            if body.get("response_format") != "pcm":
                return _error(400, "this fake only speaks response_format=pcm")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "the text to speak is missing")
        self.texts.append(text)
        self.headers.append(request.headers)
        n = len(self.texts)
        fault = self.script.fault("http_5xx", connection=n, turn=n)
        if fault is not None:
            return _error(fault.status, "the fake is failing on purpose")
        try:
            audio = speak_bytes(text, rate)
        except ValueError as exc:
            return _error(400, str(exc))
        if path.endswith("/speak") and request.url.params.get("container", "wav") != "none":
            header = _wav_header(len(audio), rate)
        return httpx.Response(
            200,
            headers={"content-type": "audio/pcm" if not header else "audio/wav"},
            content=self._stream(header + audio, rate, n),
        )

    async def _stream(self, audio: bytes, rate: int, n: int) -> AsyncIterator[bytes]:
        step = max(2, int(rate * self.chunk_ms / 1000) * 2)
        faults = {
            kind: self.script.fault(kind, connection=n, turn=n)
            for kind in ("error_event", "stall", "drop", "slow_first_byte")
        }
        if (slow := faults["slow_first_byte"]) is not None:
            await trio.sleep(slow.delay_ms / 1000)
        for i, start in enumerate(range(0, len(audio), step)):
            if (drop := faults["drop"]) is not None and i >= drop.after_messages:
                raise httpx.RemoteProtocolError("the fake dropped the connection")
            if (stall := faults["stall"]) is not None and start / 2 >= (
                rate * stall.after_audio_ms / 1000
            ):
                await trio.sleep_forever()
            if faults["error_event"] is not None and i == 1:
                raise httpx.RemoteProtocolError("the fake's synthesis failed mid-stream")
            if i and self.chunk_interval_ms:
                await trio.sleep(self.chunk_interval_ms / 1000)
            yield audio[start : start + step]


def _wav_header(data_bytes: int, rate: int) -> bytes:
    """A 44-byte RIFF/WAVE header for mono PCM16 (Deepgram's ``container=wav``)."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        data_bytes,
    )


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "error"}})
