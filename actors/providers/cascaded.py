"""The ``cascaded`` provider: Deepgram live STT -> a chat-completions LLM -> TTS, streamed.

The shared :class:`~switchboard.actors.pipeline.Pipeline` with three network stages:

- :class:`DeepgramListener`: caller audio as binary frames over a WebSocket
  in Deepgram's live protocol (``STT_URL``; :mod:`switchboard.codecs.deepgram_live`),
  phone audio as it comes (``encoding=mulaw&sample_rate=8000``), a
  ``KeepAlive`` while the caller is silent; ``SpeechStarted`` is the barge-in
  signal, ``is_final`` results are joined until ``speech_final`` or
  ``UtteranceEnd`` ends the utterance.
- :class:`ChatThinker`: any OpenAI-compatible ``POST {LLM_BASE_URL}/chat/completions``
  with ``stream: true`` (:mod:`switchboard.codecs.chat_completions`), the
  agent's instructions and tools in OpenAI's function format; streamed
  ``tool_calls`` are run through the runtime and the model is asked again
  with their results.
- :class:`SpeechVoice`: OpenAI-compatible ``POST {TTS_BASE_URL}/audio/speech``
  with ``response_format: "pcm"`` (PCM16, 24 kHz), or Deepgram's
  ``POST /v1/speak?encoding=linear16&sample_rate=24000&container=none`` when
  the base URL is Deepgram's (host ``*.deepgram.com``, or a path ending in
  ``/speak``), read as it streams.

Failures (:class:`~switchboard.actors.pipeline.StageFailed`, reported as
``ProviderFailed``): a 5xx answer or refused handshake -> ``http_5xx``; an
error event or another HTTP error -> ``error_event``; a connection lost or
a stream cut short -> ``disconnect``; no connection within the connect
timeout -> ``connect_timeout``; nothing read within the HTTP client's read
timeout -> ``stall``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import httpx
import structlog
import trio
import trio_websocket

from switchboard.codecs import chat_completions as chat
from switchboard.codecs import deepgram_live as dg
from switchboard.orchestrator.agents import AgentSpec

from ..context import AudioFormat
from ..messages import (
    AgentSaid,
    AudioChunk,
    CallerAudio,
    CallerSaid,
    CallerTranscript,
    ConversationItem,
    FailureKind,
    SpeechStarted,
    SpeechStopped,
    ToolRan,
)
from ..pipeline import CallTool, Heard, Pipeline, Play, Say, StageFailed, ToolCall
from . import ProviderSetup, WebSocketConnector
from .endpoints import Endpoints

__all__ = ["ChatThinker", "DeepgramListener", "SpeechVoice", "build", "tool_definitions"]

log = structlog.get_logger("switchboard.cascaded")

KEEPALIVE_S: Final = 5.0
"""Send Deepgram a ``KeepAlive`` after this long without audio (it closes after 10 s)."""
DRAIN_S: Final = 1.0
"""How long the rest of a stream that reported an error is read before giving up."""
MAX_TOOL_ROUNDS: Final = 4
"""Model calls per response at most (each round may run tools)."""
TTS_SAMPLE_RATE: Final = 24000
DEEPGRAM_TTS_MODEL: Final = "aura-2-thalia-en"
DEFAULT_INSTRUCTIONS: Final = "You are a helpful receptionist answering a phone call."
SPOKEN_STYLE: Final = (
    "You are speaking on a phone call: answer in short, plain sentences without "
    "lists, markdown or emoji."
)

BUILTIN_TOOLS: Final[Mapping[str, tuple[str, dict[str, Any]]]] = {
    "lookup_hours": (
        "Look up the business's opening hours; use it whenever the caller asks when it is open.",
        {"type": "object", "properties": {}},
    ),
    "transfer_to_human": (
        "Put the caller through to a person; say that you are transferring them.",
        {"type": "object", "properties": {"reason": {"type": "string"}}},
    ),
    "hangup_call": (
        "End the call once the caller has said goodbye; say goodbye first.",
        {"type": "object", "properties": {}},
    ),
}


# -- speech to text ------------------------------------------------------------------


class DeepgramListener:
    """Deepgram live transcription of the caller (see the module docstring).

    Args:
        connect: opens the WebSocket (``setup.connect``).
        url: ``STT_URL`` with the query (:func:`~switchboard.codecs.deepgram_live.listen_url`).
        api_key: sent as ``Authorization: Token <key>`` when set.
    """

    def __init__(self, connect: WebSocketConnector, url: str, api_key: str | None) -> None:
        self.connect = connect
        self.url = url
        self.headers = [("Authorization", f"Token {api_key}")] if api_key else []

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


# -- the language model ------------------------------------------------------------------


def tool_definitions(agent: AgentSpec) -> list[dict[str, Any]]:
    """The builtin tools and the agent's own, in OpenAI's function-tool format.

    An agent's own definition of a builtin (its description for the model)
    replaces the runtime's; ``transfer_to_human`` is offered only when the
    agent has a transfer number.
    """
    own = {t.name: t for t in agent.tools}

    def function(name: str, description: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
        spec = {"name": name, "description": description, "parameters": parameters}
        return {"type": "function", "function": spec}

    tools = [
        function(n, own[n].description, own[n].parameters_json()) if n in own else function(n, d, p)
        for n, (d, p) in BUILTIN_TOOLS.items()
        if n != "transfer_to_human" or agent.transfer_number
    ]
    tools += [
        function(t.name, t.description, t.parameters_json())
        for t in agent.tools
        if t.name not in BUILTIN_TOOLS
    ]
    return tools


def history_messages(history: Sequence[ConversationItem]) -> list[dict[str, Any]]:
    """The conversation as chat messages (a tool run: the call, then its result)."""
    messages: list[dict[str, Any]] = []
    for item in history:
        if isinstance(item, CallerSaid):
            messages.append({"role": "user", "content": item.text})
        elif isinstance(item, AgentSaid):
            if item.text:
                messages.append({"role": "assistant", "content": item.text})
        elif isinstance(item, ToolRan):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": json.dumps(dict(item.arguments))},
            }
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
    return messages


class ChatThinker:
    """Streamed chat completions with tools (see the module docstring)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str | None,
        model: str,
        instructions: str,
        tools: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.http = http
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self.system = {"role": "system", "content": instructions}
        self.tools = list(tools)

    async def __call__(
        self,
        history: Sequence[ConversationItem],
        utterance: CallerTranscript | None,
        say: Say,
        call_tool: CallTool,
    ) -> None:
        messages = [self.system, *history_messages(history)]
        for _ in range(MAX_TOOL_ROUNDS):
            content, calls = await self._complete(messages, say)
            if not calls:
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": content or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments_json},
                        }
                        for c in calls
                    ],
                }
            )
            for c in calls:
                result = await call_tool(ToolCall(c.name, c.arguments, c.id))
                messages.append({"role": "tool", "tool_call_id": c.id, "content": result.output})

    async def _complete(
        self, messages: list[dict[str, Any]], say: Say
    ) -> tuple[str, list[chat.ToolCallRequest]]:
        body = chat.chat_request(self.model, messages, self.tools)
        content = ""
        tools = chat.ToolCallAssembler()
        finished = False
        async with (
            _http_failures("LLM"),
            self.http.stream("POST", self.url, json=body, headers=self.headers) as response,
        ):
            await _check_status(response, "LLM")
            decoder = chat.SseDecoder()
            error: chat.StreamError | None = None
            # Read to the end even after an error event (briefly): leaving httpx's
            # byte iterators half-read leaks them until garbage collection.
            with trio.CancelScope() as drain:
                async for data in response.aiter_bytes():
                    for event in decoder.feed(data):
                        parsed = _parse(event.data)
                        if error is not None or parsed is None:
                            continue
                        if isinstance(parsed, chat.StreamDone):
                            finished = True
                        elif isinstance(parsed, chat.StreamError):
                            error = parsed
                            drain.deadline = trio.current_time() + DRAIN_S
                        else:
                            finished = finished or parsed.finish_reason is not None
                            tools.feed(parsed.tool_calls)
                            if parsed.content:
                                content += parsed.content
                                await say(parsed.content)
        if error is not None:
            raise StageFailed("error_event", f"LLM stream error: {error.message}")
        if not finished:
            raise StageFailed("disconnect", "LLM stream ended before the answer did")
        try:
            return content, tools.calls() if tools else []
        except chat.ChatStreamError as exc:
            raise StageFailed("error_event", f"LLM tool call: {exc}") from exc


def _parse(data: str) -> chat.StreamData | None:
    try:
        return chat.parse_stream_data(data)
    except chat.ChatStreamError as exc:
        log.warning("unreadable chat completion chunk", error=str(exc))
        return None


# -- text to speech ----------------------------------------------------------------------


class SpeechVoice:
    """OpenAI-compatible ``/audio/speech`` (PCM) or Deepgram ``/v1/speak`` (linear16)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str | None,
        model: str,
        voice: str,
    ) -> None:
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
            _http_failures("TTS"),
            self.http.stream("POST", self.url, json=body, headers=self.headers) as response,
        ):
            await _check_status(response, "TTS")
            async for data in response.aiter_bytes():
                data = carry + data
                cut = len(data) - len(data) % 2
                carry = data[cut:]
                if cut:
                    await play(AudioChunk(data[:cut], "pcm16", TTS_SAMPLE_RATE))


# -- HTTP failures -------------------------------------------------------------------------


@asynccontextmanager
async def _http_failures(stage: str) -> AsyncIterator[None]:
    """Map httpx's errors to :class:`StageFailed`."""
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise StageFailed("connect_timeout", f"{stage}: connection timed out") from exc
    except httpx.ReadTimeout as exc:
        raise StageFailed("stall", f"{stage}: no data within the read timeout") from exc
    except httpx.TransportError as exc:
        raise StageFailed("disconnect", f"{stage}: connection lost: {exc!r}") from exc


async def _check_status(response: httpx.Response, stage: str) -> None:
    if response.is_success:
        return
    detail = (await response.aread())[:200].decode(errors="replace")
    kind: FailureKind = "http_5xx" if response.status_code >= 500 else "error_event"
    raise StageFailed(kind, f"{stage} answered HTTP {response.status_code}: {detail}")


# -- wiring --------------------------------------------------------------------------------


def build(setup: ProviderSetup) -> Pipeline:
    """The ``cascaded`` provider for a call (see :mod:`switchboard.actors.providers`)."""
    ctx, endpoints = setup.ctx, setup.endpoints
    agent = ctx.agent

    def option(name: str) -> str:
        return agent.option("cascaded", name)

    fmt: AudioFormat = ctx.caller_format
    options = dg.ListenOptions(
        encoding="mulaw" if fmt.encoding == "pcmu" else "linear16",
        sample_rate=fmt.sample_rate,
        model=option("stt_model"),
        language=option("language"),
    )
    instructions = "\n\n".join([agent.instructions or DEFAULT_INSTRUCTIONS, SPOKEN_STYLE])
    return Pipeline(
        "cascaded",
        ctx,
        listener=DeepgramListener(
            setup.connect, dg.listen_url(endpoints.stt_url, options), endpoints.stt_api_key
        ),
        thinker=ChatThinker(
            setup.http,
            endpoints.llm_base_url,
            endpoints.llm_api_key,
            option("llm_model") or endpoints.llm_model,
            instructions,
            tool_definitions(agent),
        ),
        voice=SpeechVoice(
            setup.http,
            endpoints.tts_base_url,
            endpoints.tts_api_key,
            option("tts_model") or endpoints.tts_model,
            option("tts_voice") or endpoints.tts_voice,
        ),
        conversation=setup.conversation,
        greet=setup.greet,
        respond_now=setup.respond_now,
    )
