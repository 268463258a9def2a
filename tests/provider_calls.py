"""Shared by the call tests with the fake providers: place a phone call through the real
call nursery on Trio's MockClock, with the OpenAI Realtime and Gemini Live fakes.

Both fakes are reached in memory (real WebSocket framing, no sockets); the
caller is a fake Twilio that plays agent audio on the call's clock and
speaks eSpeak lines. Import it as ``from provider_calls import ...``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import uuid4

import httpx
import trio
from call_harness import FakeTwilio, MemoryStore, transport_for

from switchboard.actors.context import CallContext
from switchboard.actors.failover.metrics import FailoverMetrics
from switchboard.actors.local.assets import AssetRegistry
from switchboard.actors.providers import Endpoints
from switchboard.actors.tape import CallTape, RecordingTape
from switchboard.actors.tool_executor import ToolExecutor, TwilioRest
from switchboard.actors.tools.invocation import ToolRunner
from switchboard.codecs import twilio_media as wire
from switchboard.codecs import ulaw_encode
from switchboard.orchestrator.agents import AgentSpec
from switchboard.orchestrator.call import CallResources, run_call
from switchboard.orchestrator.store import EventRow
from switchboard.orchestrator.trace_file import Trace
from switchboard.testing import Script, memory_router
from switchboard.testing.fake_gemini_live import FakeGeminiLive
from switchboard.testing.fake_openai_realtime import FakeOpenAIRealtime
from switchboard.testing.speech import speak

ENDPOINTS = Endpoints(
    openai_realtime_url="wss://openai.fake/v1/realtime",
    openai_api_key="sk-test",
    gemini_live_url="wss://gemini.fake/ws/BidiGenerateContent",
    gemini_api_key="g-test",
)
ASSETS = AssetRegistry()
METRICS = FailoverMetrics()


@dataclass
class Call:
    ctx: CallContext
    twilio: FakeTwilio
    store: MemoryStore
    openai: FakeOpenAIRealtime
    gemini: FakeGeminiLive

    def events(self, type_: str | None = None) -> list[EventRow]:
        rows = [self.store.events[s] for s in sorted(self.store.events)]
        return [e for e in rows if type_ is None or e.type == type_]

    def at(self, event: EventRow) -> float:
        """An event's time on the call's clock (seconds, like ``trio.current_time()``)."""
        return self.ctx.t0 + event.t_ms / 1000

    def trace(self, door: str = "twilio") -> Trace:
        """The call's trace as ``switchboard trace export`` writes it: the events (through
        JSON), the agent snapshot and the tape (a call placed with ``record=True``)."""
        return call_trace(self.ctx, self.events(), door)

    def gemini_context(self) -> str:
        """Everything the Gemini fake was told as conversation context, as one JSON string."""
        return json.dumps([repr(m) for m in self.gemini.received])


def call_trace(ctx: CallContext, rows: Sequence[EventRow], door: str) -> Trace:
    """A call's trace as ``switchboard trace export`` writes it: its event ``rows``
    (through JSON), the agent snapshot and the tape (a :class:`RecordingTape`'s records)."""
    events = [
        {"seq": r.seq, "type": r.type, "t_ms": r.t_ms, "payload": json.loads(json.dumps(r.payload))}
        for r in rows
    ]
    manifest = {
        "door": door,
        "session_id": str(ctx.session_id),
        "tenant": {"id": str(ctx.tenant_id), "name": "t"},
        "agent": {"id": str(ctx.agent_id), "name": ctx.agent.name},
    }
    tape = ctx.tape
    records = tape.take() if isinstance(tape, RecordingTape) else None
    return Trace(manifest, {}, events, ctx.agent.to_json(), records)


def caller_line(text: str) -> bytes:
    return ulaw_encode(speak(text, 8000))


async def place_call(
    agent: AgentSpec,
    openai: Script,
    gemini: Script,
    *,
    lines: Sequence[str],
    speak_at: Sequence[float],
    hang_up_at: float,
    twilio_rest: TwilioRest | None = None,
    http: httpx.AsyncClient | None = None,
    record: bool = False,
    tool_runners: Mapping[str, ToolRunner] | None = None,
    setup_s: float = 0.0,
) -> Call:
    """Place a call: the caller says ``lines[i]`` at ``speak_at[i]`` s, hangs up at
    ``hang_up_at`` (unless the call ends first). ``twilio_rest`` and ``http``: for
    transfers (Twilio's REST API behind an ``httpx.MockTransport``). ``record``: the
    call's tape is a :class:`RecordingTape` (``call.ctx.tape``). ``tool_runners``: runners
    by tool name in place of the agent's own (:attr:`ToolKit.runners`). ``setup_s``: how
    long the call takes to set up before its first event (a busy machine's journal)."""
    t0 = trio.current_time()
    tape = RecordingTape(lambda: (trio.current_time() - t0) * 1000.0) if record else CallTape()
    fakes = Call(
        CallContext(
            uuid4(),
            uuid4(),
            uuid4(),
            agent,
            t0=t0,
            call_sid="CA1",
            stream_sid="MZ1",
            tape=tape,
        ),
        FakeTwilio(),
        MemoryStore(),
        FakeOpenAIRealtime(openai),
        FakeGeminiLive(gemini),
    )
    res = CallResources(
        metrics=METRICS,
        store=fakes.store,  # type: ignore[arg-type]
        assets=ASSETS,
        endpoints=ENDPOINTS,
        twilio_rest=twilio_rest,
        http=http,
        connect=memory_router(
            {"openai.fake": fakes.openai.handler, "gemini.fake": fakes.gemini.handler}
        ),
    )
    if tool_runners is not None:
        runners = dict(tool_runners)

        def make_tools(ctx: CallContext, **kwargs: Any) -> ToolExecutor:
            kwargs["kit"] = replace(kwargs["kit"], runners=runners)
            return ToolExecutor(ctx, **kwargs)

        res = replace(res, make_tools=make_tools)
    said = {round(t / 0.02): caller_line(text) for t, text in zip(speak_at, lines, strict=False)}
    encoder = wire.InboundEncoder("MZ1", "CA1", "AC1")

    async def caller() -> None:
        """A phone sends a 20 ms frame every 20 ms: speech when a line is due, else silence."""
        pending = b""
        for frame in range(round(hang_up_at / 0.02)):
            pending += said.get(frame, b"")
            payload, pending = (pending[:160], pending[160:]) if pending else (b"\xff" * 160, b"")
            await fakes.twilio.to_server.send(encoder.media(payload.ljust(160, b"\xff")))
            await trio.sleep(0.02)
        await fakes.twilio.to_server.send(encoder.stop())

    async with trio.open_nursery() as nursery:
        fakes.twilio.nursery = nursery
        nursery.start_soon(caller)
        await trio.sleep(setup_s)
        await run_call(fakes.ctx, transport_for(fakes.ctx, fakes.twilio), res)
        nursery.cancel_scope.cancel()
    return fakes
