"""Shared by the gemini-live tests: the adapter against the fake, in memory, and wire checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import uuid4

import httpx
import trio
from google.genai import types

from switchboard.actors.context import PHONE_AUDIO, AudioFormat, CallContext, EventSink
from switchboard.actors.local import tts
from switchboard.actors.local.assets import AssetRegistry
from switchboard.actors.messages import (
    AudioChunk,
    CallerAudio,
    CallEvent,
    ConversationItem,
    ToProvider,
    ToSupervisor,
)
from switchboard.actors.providers import Endpoints, ProviderSetup, WebSocketConnector
from switchboard.actors.providers.gemini_live import GeminiLiveProvider, build
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.testing import memory_connector
from switchboard.testing.fake_gemini_live import FakeGeminiLive

AGENT = parse_agent_yaml(
    "name: g\ntenant: t\ngreeting: Welcome to Bright Smile Dental.\n"
    "instructions: You are a dental receptionist.\nmode: gemini-live\n"
    'transfer_number: "+15005550009"\n'
    "providers:\n  gemini-live: {voice: Kore}\n"
    "tools:\n  - name: book_visit\n    description: Book a visit.\n"
    "    url: https://clinic.example/visits\n"
    "    parameters: {type: object, properties: {day: {type: string}}}\n"
    "intents:\n  - name: bye\n    phrases: [bye]\n    reply: bye\n"
)
FRAME = 160  # 20 ms of G.711 mu-law at 8 kHz
SILENCE = b"\xff" * FRAME

M = TypeVar("M")


@dataclass
class Harness:
    provider: GeminiLiveProvider
    inbox: trio.MemorySendChannel[ToProvider]
    out: list[ToSupervisor] = field(default_factory=list)
    events: list[CallEvent] = field(default_factory=list)
    caller_ms: float = 0.0
    sent_audio: list[bytes] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    def notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
        with trio.fail_after(timeout_s):
            while not predicate():
                await self._changed.wait()

    async def next(self, kind: type[M], after: int = 0, timeout_s: float = 30.0) -> M:
        """The first message of ``kind`` at index >= ``after`` of :attr:`out`."""
        found: list[M] = []

        def seen() -> bool:
            found[:] = [m for m in self.out[after:] if isinstance(m, kind)]
            return bool(found)

        await self.wait(seen, timeout_s)
        return found[0]

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.out if isinstance(m, kind)]

    def event(self, type_: str) -> list[CallEvent]:
        return [e for e in self.events if e.type == type_]

    async def send_audio(self, ulaw: bytes) -> None:
        """Caller audio in 20 ms frames, in real (virtual) time."""
        for i in range(0, len(ulaw), FRAME):
            frame = ulaw[i : i + FRAME].ljust(FRAME, b"\xff")
            try:
                await self.inbox.send(CallerAudio(AudioChunk(frame, "pcmu", 8000), self.caller_ms))
            except trio.BrokenResourceError:
                return  # the provider has ended (it failed)
            self.sent_audio.append(frame)
            self.caller_ms += 20.0
            await trio.sleep(0.02)

    async def say(self, text: str, trailing_silence_ms: float = 1200) -> None:
        await self.send_audio(tts.synthesize_ulaw(text) + SILENCE * int(trailing_silence_ms / 20))

    async def silence(self, ms: float) -> None:
        await self.send_audio(SILENCE * int(ms / 20))


def setup_for(
    connect: WebSocketConnector,
    *,
    key: str | None = None,
    caller_format: AudioFormat = PHONE_AUDIO,
    conversation: tuple[ConversationItem, ...] = (),
    greet: bool = True,
    respond_now: bool = False,
) -> ProviderSetup:
    ctx = CallContext(uuid4(), uuid4(), uuid4(), AGENT, trio.current_time(), caller_format)
    return ProviderSetup(
        ctx,
        Endpoints(gemini_live_url="wss://gemini.test/ws/live", gemini_api_key=key),
        connect,
        httpx.AsyncClient(),
        AssetRegistry(),
        conversation,
        greet,
        respond_now,
    )


@asynccontextmanager
async def running(
    fake: FakeGeminiLive | None = None,
    *,
    handler: Any = None,
    **setup_kw: Any,
) -> AsyncIterator[Harness]:
    """The adapter running against ``fake`` (or any ``handler``) over a memory stream."""
    connect = memory_connector(handler or fake.handler)  # type: ignore[union-attr]
    setup = setup_for(connect, **setup_kw)
    provider = build(setup)
    to_provider, inbox = trio.open_memory_channel[ToProvider](64)
    outbox, from_provider = trio.open_memory_channel[ToSupervisor](64)
    events_send, events_receive = trio.open_memory_channel[CallEvent](1000)
    harness = Harness(provider, to_provider)

    async def collect_out() -> None:
        async for message in from_provider:
            harness.out.append(message)
            harness.notify()

    async def collect_events() -> None:
        async for event in events_receive:
            harness.events.append(event)
            harness.notify()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect_out)
        nursery.start_soon(collect_events)

        async def run_provider() -> None:
            async with outbox:
                await provider(inbox, outbox, EventSink(setup.ctx, events_send))

        nursery.start_soon(run_provider)
        yield harness
        nursery.cancel_scope.cancel()
    if fake is not None:
        check_wire(fake)


def check_wire(fake: FakeGeminiLive) -> None:
    """Every frame each side sent is a valid message of google-genai's published types."""
    for raw in fake.sent:
        message = types.LiveServerMessage.model_validate_json(raw)
        assert message.model_dump(exclude_none=True), raw
    for raw in fake.received_raw:
        message = types.LiveClientMessage.model_validate_json(raw)
        assert message.model_dump(exclude_none=True), raw
