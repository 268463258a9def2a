"""Shared by the openai-realtime tests: the adapter on a fake, in memory, and wire checks."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import trio
from pydantic import TypeAdapter

from switchboard.actors.context import PHONE_AUDIO, AudioFormat, CallContext, EventSink
from switchboard.actors.messages import (
    AudioChunk,
    CallerAudio,
    CallEvent,
    ConversationItem,
    ToProvider,
    ToSupervisor,
)
from switchboard.actors.providers import Endpoints, ProviderSetup
from switchboard.actors.providers.openai_realtime import build
from switchboard.codecs import ulaw_encode
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.agents import AgentSpec
from switchboard.testing import memory_connector
from switchboard.testing.fake_openai_realtime import FakeOpenAIRealtime
from switchboard.testing.speech import speak

AGENT = parse_agent_yaml(
    "name: oa\ntenant: t\ngreeting: Thanks for calling the test clinic.\n"
    "instructions: You are a receptionist.\nmode: openai-realtime\nintents: []\n"
    'transfer_number: "+15005550009"\n'
    "providers:\n  openai-realtime: {voice: marin, turn_detection: semantic_vad}\n"
)
FAKE_URL = "wss://fake.openai.test/v1/realtime"


def server_event_adapter(beta: bool = False) -> TypeAdapter[Any]:
    if beta:
        from openai.types.beta.realtime import RealtimeServerEvent
    else:
        from openai.types.realtime import RealtimeServerEvent
    return TypeAdapter(RealtimeServerEvent)


def client_event_adapter(beta: bool = False) -> TypeAdapter[Any]:
    if beta:
        from openai.types.beta.realtime import RealtimeClientEvent
    else:
        from openai.types.realtime import RealtimeClientEvent
    return TypeAdapter(RealtimeClientEvent)


def check_wire(fake: FakeOpenAIRealtime, *, beta: bool = False) -> None:
    """Every event the fake sent, and every event it received, is valid for the SDK's types."""
    server, client = server_event_adapter(beta), client_event_adapter()
    for event in fake.sent:
        server.validate_python(event)
    for event in fake.received:
        client.validate_python(event)


def caller_speech(text: str, fmt: AudioFormat = PHONE_AUDIO, silence_ms: int = 1200) -> bytes:
    """``text`` spoken then ``silence_ms`` of silence, in ``fmt`` (a caller's line)."""
    pcm = speak(text, fmt.sample_rate)
    n_silence = fmt.sample_rate * silence_ms // 1000
    if fmt.encoding == "pcmu":
        return ulaw_encode(pcm) + b"\xff" * n_silence
    return pcm.astype("<i2").tobytes() + b"\x00\x00" * n_silence


@dataclass
class Harness:
    """The adapter running against ``fake``; what it sent to the supervisor, with times."""

    fake: FakeOpenAIRealtime
    setup: ProviderSetup
    to_provider: trio.MemorySendChannel[ToProvider]
    out: list[tuple[float, ToSupervisor]] = field(default_factory=list)
    events: list[CallEvent] = field(default_factory=list)
    caller_ms: float = 0.0
    done: trio.Event = field(default_factory=trio.Event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for _, m in self.out if isinstance(m, kind)]

    async def wait_for(
        self, kind: type[Any], count: int = 1, where: Callable[[Any], bool] = lambda m: True
    ) -> Any:
        """The ``count``-th message of ``kind`` (matching ``where``) once it has arrived."""
        with trio.fail_after(60):
            while len([m for m in self.of(kind) if where(m)]) < count:
                await trio.sleep(0.005)
        return [m for m in self.of(kind) if where(m)][count - 1]

    def index(self, message: Any) -> int:
        """Where ``message`` is in the order the adapter sent everything."""
        return next(i for i, (_, m) in enumerate(self.out) if m is message)

    def at(self, message: Any) -> float:
        return next(t for t, m in self.out if m is message)

    async def say(self, audio: bytes, fmt: AudioFormat = PHONE_AUDIO) -> None:
        """Send caller audio in 20 ms frames, in real time (on the test's clock)."""
        width = 1 if fmt.encoding == "pcmu" else 2
        step = fmt.sample_rate * 20 // 1000 * width
        for i in range(0, len(audio), step):
            chunk = AudioChunk(audio[i : i + step], fmt.encoding, fmt.sample_rate)
            await self.to_provider.send(CallerAudio(chunk, self.caller_ms))
            self.caller_ms += chunk.duration_ms
            await trio.sleep(0.02)


def make_setup(
    connect: Any,
    *,
    agent: AgentSpec = AGENT,
    caller_format: AudioFormat = PHONE_AUDIO,
    api_key: str | None = None,
    greet: bool = True,
    respond_now: bool = False,
    conversation: Sequence[ConversationItem] = (),
    port: int | None = None,
) -> ProviderSetup:
    """The adapter's setup; ``port``: a loopback port to reach instead of the in-memory fake."""
    ctx = CallContext(
        uuid4(), uuid4(), uuid4(), agent, trio.current_time(), caller_format=caller_format
    )
    return ProviderSetup(
        ctx,
        Endpoints(
            openai_realtime_url=FAKE_URL if port is None else f"ws://127.0.0.1:{port}/v1/realtime",
            openai_api_key=api_key,
        ),
        connect,
        http=None,  # type: ignore[arg-type]  # not used by this provider
        assets=None,  # type: ignore[arg-type]
        conversation=tuple(conversation),
        greet=greet,
        respond_now=respond_now,
    )


async def start(
    nursery: trio.Nursery, fake: FakeOpenAIRealtime, connect: Any = None, **kw: Any
) -> Harness:
    """Run the adapter on ``fake`` (in memory) in ``nursery``."""
    setup = make_setup(connect or memory_connector(fake.handler), **kw)
    to_provider, inbox = trio.open_memory_channel[ToProvider](64)
    outbox, from_provider = trio.open_memory_channel[ToSupervisor](10_000)
    events_send, events_receive = trio.open_memory_channel[CallEvent](1000)
    harness = Harness(fake, setup, to_provider)

    async def collect() -> None:
        async for message in from_provider:
            harness.out.append((trio.current_time(), message))

    async def collect_events() -> None:
        async for event in events_receive:
            harness.events.append(event)

    async def run() -> None:
        async with outbox:
            await build(setup)(inbox, outbox, EventSink(setup.ctx, events_send))
        harness.done.set()

    nursery.start_soon(collect)
    nursery.start_soon(collect_events)
    nursery.start_soon(run)
    return harness


def received(fake: FakeOpenAIRealtime, type_: str) -> list[dict[str, Any]]:
    return [e for e in fake.received if e.get("type") == type_]


def dumps(data: Any) -> str:
    return json.dumps(data)
