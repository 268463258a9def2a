"""The ``cascaded`` provider's listener: Deepgram live speech-to-text over a WebSocket.

Caller audio goes as binary frames in the encoding named in the URL's query
(phone audio as it comes: ``encoding=mulaw&sample_rate=8000``), with a
``KeepAlive`` while the caller is silent; the server's messages
(:mod:`switchboard.codecs.deepgram_live`) become the pipeline's: every
``SpeechStarted`` (the barge-in signal), and the ``is_final`` results joined
until ``speech_final`` or ``UtteranceEnd`` ends the utterance.

Failures: a refused handshake -> ``http_5xx`` (5xx) or ``error_event``; an
``Error`` message or a close with 1011 -> ``error_event``; any other close
or an unreachable server -> ``disconnect``; no handshake in time ->
``connect_timeout``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import structlog
import trio
import trio_websocket

from switchboard.codecs import deepgram_live as dg

from ..messages import CallerAudio, CallerTranscript, FailureKind, SpeechStarted, SpeechStopped
from ..pipeline import Heard, StageFailed
from ..tape import CallTape
from . import WebSocketConnector

__all__ = ["KEEPALIVE_S", "DeepgramListener"]

log = structlog.get_logger("switchboard.cascaded")

KEEPALIVE_S: Final = 5.0
"""Send Deepgram a ``KeepAlive`` after this long without audio (it closes after 10 s)."""


class DeepgramListener:
    """Deepgram live transcription of the caller (see the module docstring).

    Args:
        connect: opens the WebSocket (``setup.connect``).
        url: ``STT_URL`` with the query (:func:`~switchboard.codecs.deepgram_live.listen_url`).
        api_key: sent as ``Authorization: Token <key>`` when set.
        tape, source: where each message Deepgram sends is kept, as it arrives
            (``tape.provider(source, message)``); nowhere by default.
    """

    def __init__(
        self,
        connect: WebSocketConnector,
        url: str,
        api_key: str | None,
        *,
        tape: CallTape | None = None,
        source: str = "cascaded#1/stt",
    ) -> None:
        self.connect = connect
        self.url = url
        self.headers = [("Authorization", f"Token {api_key}")] if api_key else []
        self.tape = tape if tape is not None else CallTape()
        self.source = source

    async def __call__(
        self,
        audio: trio.MemoryReceiveChannel[CallerAudio],
        heard: Callable[[Heard], Awaitable[None]],
    ) -> None:
        async with _websocket_failures(), self.connect(self.url, self.headers) as ws:
            base_ms: list[float] = []  # the caller-timeline offset of the first frame sent
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive, ws, heard, base_ms)
                await self._send_audio(ws, audio, base_ms)
                nursery.cancel_scope.cancel()

    async def _send_audio(
        self,
        ws: trio_websocket.WebSocketConnection,
        audio: trio.MemoryReceiveChannel[CallerAudio],
        base_ms: list[float],
    ) -> None:
        while True:
            with trio.move_on_after(KEEPALIVE_S) as idle:
                try:
                    message = await audio.receive()
                except trio.EndOfChannel:
                    break
            if idle.cancelled_caught:
                await ws.send_message(dg.encode_keep_alive())
                continue
            if not base_ms:
                base_ms.append(message.offset_ms)
            try:
                await ws.send_message(message.chunk.data)
            except trio_websocket.ConnectionClosed as exc:
                raise _closed(exc) from exc
        with trio.move_on_after(1):
            try:
                await ws.send_message(dg.encode_close_stream())
            except trio_websocket.ConnectionClosed:
                pass  # the call is over either way

    async def _receive(
        self,
        ws: trio_websocket.WebSocketConnection,
        heard: Callable[[Heard], Awaitable[None]],
        base_ms: list[float],
    ) -> None:
        finals: list[str] = []
        start_ms: float | None = None
        end_ms = 0.0
        speaking = False

        def at(seconds: float) -> float:
            return (base_ms[0] if base_ms else 0.0) + seconds * 1000.0

        while True:
            try:
                raw = await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                raise _closed(exc) from exc
            self.tape.provider(self.source, raw)
            try:
                message = dg.parse_server_message(raw)
            except dg.DeepgramMessageError as exc:
                log.warning("unreadable Deepgram message", error=str(exc))
                continue
            if isinstance(message, dg.DeepgramError):
                raise StageFailed("error_event", f"Deepgram: {message.description}")
            if isinstance(message, dg.SpeechStarted):  # every onset: each may be a barge-in
                speaking = True
                await heard(SpeechStarted(at(message.timestamp_s)))
            elif isinstance(message, dg.Results) and message.transcript.strip():
                if not speaking:  # vad_events off: the first words are the signal
                    speaking = True
                    await heard(SpeechStarted(at(message.start_s)))
                if start_ms is None:
                    start_ms = at(message.start_s)
                if message.is_final:
                    finals.append(message.transcript.strip())
                    end_ms = at(message.start_s + message.duration_s)
            ended = (isinstance(message, dg.Results) and message.speech_final) or isinstance(
                message, dg.UtteranceEnd
            )
            if ended:
                if finals:
                    await heard(SpeechStopped(end_ms))
                    await heard(CallerTranscript(" ".join(finals), start_ms or end_ms, end_ms))
                finals, start_ms, speaking = [], None, False


def _closed(exc: trio_websocket.ConnectionClosed) -> StageFailed:
    """Deepgram closes with 1011 and a ``NET-``/``DATA-`` reason on a server error."""
    code, text = (exc.reason.code, exc.reason.reason or "") if exc.reason else (None, "")
    detail = f"STT connection closed: {code} {text}".strip()
    return StageFailed("error_event" if code == 1011 else "disconnect", detail)


@asynccontextmanager
async def _websocket_failures() -> AsyncIterator[None]:
    """Map trio-websocket's handshake errors to :class:`StageFailed`."""
    try:
        yield
    except trio_websocket.ConnectionRejected as exc:
        status = exc.status_code or 0
        kind: FailureKind = "http_5xx" if 500 <= status <= 599 else "error_event"
        raise StageFailed(kind, f"STT handshake refused: HTTP {status}") from exc
    except trio_websocket.HandshakeError as exc:
        raise StageFailed("disconnect", f"STT handshake failed: {exc!r}") from exc
    except trio.TooSlowError as exc:
        raise StageFailed("connect_timeout", "STT connection timed out") from exc
    except OSError as exc:
        raise StageFailed("disconnect", f"STT unreachable: {exc!r}") from exc
