"""A fake Deepgram live transcription server (``wss://api.deepgram.com/v1/listen``).

A WebSocket handler (serve it with :func:`switchboard.testing.serve`, or
reach it in memory with :func:`switchboard.testing.memory_connector`) that
speaks the wire format of :mod:`switchboard.codecs.deepgram_live`. It reads
``encoding`` (``mulaw`` or ``linear16``), ``sample_rate``, ``interim_results``,
``vad_events`` and ``endpointing`` from the URL's query, hears the binary
audio frames with :class:`~switchboard.testing.speech.Ear` (server-side VAD),
and for the n-th utterance reports ``script.turn(n).caller_text``:

- ``SpeechStarted`` when speech begins (with ``vad_events=true``);
- an interim ``Results`` (``is_final: false``, the first half of the words)
  once the caller has spoken for ``interim_after_ms`` (with
  ``interim_results=true``);
- at the end of speech, a final ``Results`` with ``is_final`` and
  ``speech_final`` true, then ``UtteranceEnd``;
- ``Metadata`` when the client sends ``CloseStream``, then a normal close.

``KeepAlive`` and ``Finalize`` are accepted. Faults (``connection``: 1 for
the first connection; ``turn``: 0 at the handshake, n at the n-th
utterance): ``http_5xx`` refuses the handshake; ``error_event`` sends an
``Error`` message and closes with 1011 (as Deepgram does, reason
``NET-0001``); ``stall`` never reports the utterance; ``drop`` closes the
connection (1001, going away) after ``after_messages`` more messages;
``slow_first_byte`` waits ``delay_ms`` before reporting the utterance.
``headers`` and ``queries`` record each connection's for tests.

By hand: ``python -m switchboard.testing cascaded`` (with the fake chat and TTS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import trio
import trio_websocket

from switchboard.codecs import deepgram_live as dg

from .script import FaultKind, Script
from .speech import Ear

__all__ = ["FakeDeepgram"]


@dataclass
class FakeDeepgram:
    """The fake (see the module docstring)."""

    script: Script = field(default_factory=Script)
    interim_after_ms: float = 400.0
    connections: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    utterances: int = 0

    async def handler(self, request: trio_websocket.WebSocketRequest) -> None:
        """Serve one connection."""
        self.connections += 1
        connection = self.connections
        query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}
        self.queries.append(query)
        self.headers.append({k.decode().lower(): v.decode() for k, v in request.headers})
        fault = self.script.fault("http_5xx", connection=connection, turn=0)
        if fault is not None:
            await request.reject(fault.status, body=b'{"err_code":"INTERNAL_SERVER_ERROR"}')
            return
        encoding = query.get("encoding", "linear16")
        if encoding not in dg.ENCODINGS.values():
            await request.reject(400, body=b'{"err_code":"Bad Request","err_msg":"encoding"}')
            return
        ws = await request.accept()
        session = _Session(self, ws, connection, query)
        try:
            await session.run()
        except trio_websocket.ConnectionClosed:
            pass  # the client went away


class _Session:
    def __init__(
        self,
        fake: FakeDeepgram,
        ws: trio_websocket.WebSocketConnection,
        connection: int,
        query: dict[str, str],
    ) -> None:
        self.fake = fake
        self.ws = ws
        self.connection = connection
        self.interim = query.get("interim_results", "false") == "true"
        self.vad_events = query.get("vad_events", "false") == "true"
        rate = int(query.get("sample_rate", "16000"))
        endpointing = query.get("endpointing", "300")
        silence_ms = int(endpointing) if endpointing.isdigit() else 300
        encoding = "pcmu" if query.get("encoding") == "mulaw" else "pcm16"
        self.ear = Ear(rate, encoding, silence_ms=max(100, silence_ms))
        self.request_id = f"fake-{connection:04d}"
        self.started_ms: float | None = None
        self.interim_sent = False
        self.messages_left: int | None = None  # a drop fault's countdown

    async def run(self) -> None:
        while True:
            message = await self.ws.get_message()
            if isinstance(message, str):
                kind = dg_type(message)
                if kind == "CloseStream":
                    await self.send(dg.encode_metadata(self.request_id, self.ear.heard_ms / 1000))
                    await self.ws.aclose()
                    return
                continue  # KeepAlive, Finalize
            for heard in self.ear.hear(message):
                if heard.speaking:
                    await self.speech_started(heard.at_ms)
                else:
                    await self.speech_ended(heard.at_ms)
            if (
                self.interim
                and self.started_ms is not None
                and not self.interim_sent
                and self.ear.heard_ms - self.started_ms >= self.fake.interim_after_ms
            ):
                self.interim_sent = True
                words = self.fake.script.turn(self.fake.utterances + 1).caller_text.split()
                await self.send(
                    dg.encode_results(
                        " ".join(words[: max(1, len(words) // 2)]),
                        self.started_ms / 1000,
                        (self.ear.heard_ms - self.started_ms) / 1000,
                        is_final=False,
                        speech_final=False,
                        request_id=self.request_id,
                    )
                )

    async def speech_started(self, at_ms: float) -> None:
        self.started_ms = at_ms
        self.interim_sent = False
        if self.vad_events:
            await self.send(dg.encode_speech_started(at_ms / 1000))

    async def speech_ended(self, at_ms: float) -> None:
        start_ms = self.started_ms if self.started_ms is not None else at_ms
        self.started_ms = None
        self.fake.utterances += 1
        n = self.fake.utterances
        script = self.fake.script

        def fault(kind: FaultKind) -> bool:
            return script.fault(kind, connection=self.connection, turn=n) is not None

        if (drop := script.fault("drop", connection=self.connection, turn=n)) is not None:
            self.messages_left = drop.after_messages
        if fault("error_event"):
            await self.send(dg.encode_error("The fake failed on purpose.", "NET-0001"))
            await self.ws.aclose(1011, "NET-0001")
            return
        if fault("stall"):
            return
        if (
            slow := script.fault("slow_first_byte", connection=self.connection, turn=n)
        ) is not None:
            await trio.sleep(slow.delay_ms / 1000)
        text = script.turn(n).caller_text
        duration_s = max(0.0, at_ms - start_ms) / 1000
        await self.send(
            dg.encode_results(
                text,
                start_ms / 1000,
                duration_s,
                is_final=True,
                speech_final=True,
                request_id=self.request_id,
            )
        )
        await self.send(dg.encode_utterance_end(at_ms / 1000))

    async def send(self, text: str) -> None:
        if self.messages_left is not None:
            if self.messages_left <= 0:
                await self.ws.aclose(1001, "going away")
                raise trio_websocket.ConnectionClosed(None)
            self.messages_left -= 1
        await self.ws.send_message(text)


def dg_type(message: str) -> str:
    """The ``type`` of a client control message ("" if it is not one)."""
    try:
        data = json.loads(message)
    except ValueError:
        return ""
    return str(data.get("type", "")) if isinstance(data, dict) else ""
