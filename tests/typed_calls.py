"""Shared by the typed-text call tests: a browser page or a ``/v1/realtime`` client as
the caller, the real call nursery, and the OpenAI Realtime and Gemini Live fakes in
memory, on Trio's MockClock.

The client is a :class:`ScriptedClient`: it sends its scripted messages at their
times (seconds after the call's start) and records what it received, with the
time. Import it as ``from typed_calls import ...``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import uuid4

import trio
from call_harness import MemoryStore
from provider_calls import ASSETS, ENDPOINTS, METRICS, call_trace

from switchboard.actors.browser_transport import BrowserTransport
from switchboard.actors.context import AudioFormat, CallContext, EventSink
from switchboard.actors.messages import HearCaller, ToSupervisor, ToTransport
from switchboard.actors.realtime_transport import RealtimeTransport
from switchboard.actors.tape import CallTape, RecordingTape
from switchboard.orchestrator.agents import AgentSpec
from switchboard.orchestrator.browser_routes import PageFeed
from switchboard.orchestrator.call import CallResources, run_call
from switchboard.orchestrator.store import EventRow
from switchboard.orchestrator.trace_file import Trace
from switchboard.testing import Script, memory_router
from switchboard.testing.fake_gemini_live import FakeGeminiLive
from switchboard.testing.fake_openai_realtime import FakeOpenAIRealtime

RATE = 24000
Door = Literal["browser", "realtime"]


class ScriptedClient:
    """A MessageSocket: sends ``script`` (``(at_s, message)``, ``message`` a JSON-able
    dict) at its times after ``t0``, then the caller hangs up at ``hang_up_s``; keeps
    everything the server sent as ``(t_s, data)``."""

    def __init__(self, t0: float, script: Sequence[tuple[float, dict[str, Any]]], hang_up_s: float):
        self._t0 = t0
        self._script = sorted(script, key=lambda item: item[0])
        self._hang_up_s = hang_up_s
        self._next = 0
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.closed: tuple[int, str] | None = None
        self._closed = trio.Event()

    async def receive(self) -> str | None:
        if self._next < len(self._script):
            at_s, message = self._script[self._next]
            self._next += 1
            with trio.move_on_at(self._t0 + at_s):
                await self._closed.wait()
            return None if self.closed is not None else json.dumps(message)
        with trio.move_on_at(self._t0 + self._hang_up_s):
            await self._closed.wait()
        return None

    async def send(self, message: str) -> None:
        if self.closed is None:
            self.received.append((trio.current_time() - self._t0, json.loads(message)))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed is None:
            self.closed = (code, reason)
        self._closed.set()

    def of(self, key: str, value: str) -> list[tuple[float, dict[str, Any]]]:
        """What was received whose ``key`` (``event`` or ``type``) is ``value``."""
        return [(t, m) for t, m in self.received if m.get(key) == value]


@dataclass
class TypedCall:
    ctx: CallContext
    client: ScriptedClient
    store: MemoryStore
    openai: FakeOpenAIRealtime
    gemini: FakeGeminiLive

    def events(self, type_: str | None = None) -> list[EventRow]:
        rows = [self.store.events[s] for s in sorted(self.store.events)]
        return [e for e in rows if type_ is None or e.type == type_]

    def trace(self) -> Trace:
        """The call's trace as ``switchboard trace export`` writes it (a call placed with
        ``record=True``)."""
        return call_trace(self.ctx, self.events(), str(self.ctx.extra["transport"]))


async def place_typed_call(
    agent: AgentSpec,
    openai: Script,
    door: Door,
    script: Sequence[tuple[float, dict[str, Any]]],
    *,
    hang_up_s: float,
    gemini: Script | None = None,
    record: bool = False,
) -> TypedCall:
    """A browser (PCM16 24 kHz) or ``/v1/realtime`` call whose client plays ``script``."""
    t0 = trio.current_time()
    tape = RecordingTape(lambda: (trio.current_time() - t0) * 1000.0) if record else CallTape()
    ctx = CallContext(
        uuid4(),
        uuid4(),
        uuid4(),
        agent,
        t0=t0,
        caller_format=AudioFormat("pcm16", RATE),
        tape=tape,
        extra={"transport": door},
    )
    call = TypedCall(
        ctx,
        ScriptedClient(t0, script, hang_up_s),
        MemoryStore(),
        FakeOpenAIRealtime(openai),
        FakeGeminiLive(gemini or Script()),
    )
    res = CallResources(
        metrics=METRICS,
        store=call.store,  # type: ignore[arg-type]
        assets=ASSETS,
        endpoints=ENDPOINTS,
        connect=memory_router(
            {"openai.fake": call.openai.handler, "gemini.fake": call.gemini.handler}
        ),
    )
    feed = PageFeed()

    def make_transport(
        inbox: trio.MemoryReceiveChannel[ToTransport],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        hear: HearCaller,
        events: EventSink,
    ) -> BrowserTransport | RealtimeTransport:
        if door == "browser":
            return BrowserTransport(
                ctx,
                socket=call.client,
                inbox=inbox,
                to_supervisor=to_supervisor,
                hear=hear,
                events=events,
                call_events=feed.events,
            )
        return RealtimeTransport(
            ctx, socket=call.client, inbox=inbox, to_supervisor=to_supervisor, events=events
        )

    with feed:
        await run_call(ctx, make_transport, res, on_logged=feed.on_logged)
    return call


def text_item(text: str, **extra: Any) -> dict[str, Any]:
    """A ``/v1/realtime`` client's ``conversation.item.create`` of a user text message."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return {"type": "conversation.item.create", "item": {**item, **extra}}
