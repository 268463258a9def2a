"""The browser transport on Trio's MockClock, with a fake page on the other end.

What a user would notice: the agent's audio arrives in 20 ms frames never
more than the playout lead ahead of real time, a barge-in stops it at once,
marks are answered when the audio before them has played, the call ends
after the last word has played, and the page's messages become caller audio
on the caller's own timeline.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import trio

from switchboard.actors.browser_transport import BrowserTransport, page_message
from switchboard.actors.context import AudioFormat, CallContext, EventSink
from switchboard.actors.messages import (
    AudioChunk,
    CallerAudio,
    CallerHungUp,
    CallerText,
    CallEvent,
    ClearPlayback,
    EndCall,
    MarkPlayback,
    PlayAudio,
    PlaybackCleared,
    PlaybackMarked,
    ToSupervisor,
    ToTransport,
)
from switchboard.actors.playout import top_up_s
from switchboard.codecs import browser_protocol as wire
from switchboard.orchestrator.agents import AgentSpec

RATE = 24000
LEAD_S = 0.3
TOP_UP_S = top_up_s(LEAD_S * 1000)


class FakePage:
    """A MessageSocket: what the page sends, and what it received (with the time)."""

    def __init__(self) -> None:
        self.to_server, self._incoming = trio.open_memory_channel[str](100)
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.closed_at: float | None = None

    async def receive(self) -> str | None:
        try:
            return await self._incoming.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    async def send(self, message: str) -> None:
        if self.closed_at is None:
            self.received.append((trio.current_time(), json.loads(message)))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed_at is None:
            self.closed_at = trio.current_time()
        self.to_server.close()

    def of(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.received if m["event"] == event]


class Call:
    """A transport between a fake page and a fake supervisor."""

    def __init__(self, nursery: trio.Nursery) -> None:
        agent = AgentSpec(name="desk", tenant="acme", greeting="Hello", intents=())
        self.ctx = CallContext(
            uuid4(),
            uuid4(),
            uuid4(),
            agent,
            trio.current_time(),
            caller_format=AudioFormat("pcm16", RATE),
        )
        self.page = FakePage()
        self.commands, inbox = trio.open_memory_channel[ToTransport](64)
        to_supervisor, self.supervisor = trio.open_memory_channel[ToSupervisor](64)
        events_send, self.events = trio.open_memory_channel[CallEvent](100)
        self.call_events, call_events_receive = trio.open_memory_channel[CallEvent](10)
        self.transport = BrowserTransport(
            self.ctx,
            socket=self.page,
            inbox=inbox,
            to_supervisor=to_supervisor,
            events=EventSink(self.ctx, events_send),
            call_events=call_events_receive,
            playout_lead_ms=LEAD_S * 1000,
        )
        self.heard: list[tuple[float, ToSupervisor]] = []
        nursery.start_soon(self._listen)

    async def _listen(self) -> None:
        async for message in self.supervisor:
            self.heard.append((trio.current_time(), message))

    def audio_s(self) -> float:
        """Seconds of agent audio the page received."""
        frames = [wire.parse_outbound(json.dumps(m)) for _, m in self.page.of("audio")]
        return sum(len(f.pcm) for f in frames if isinstance(f, wire.AudioOut)) / (2 * RATE)


def speech(seconds: float) -> AudioChunk:
    return AudioChunk(b"\x01\x00" * int(RATE * seconds), "pcm16", RATE)


async def test_audio_is_paced_marks_answered_on_time_and_the_call_ends_after_the_last_word(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        call = Call(nursery)
        t0 = trio.current_time()
        await nursery.start(call.transport.run)
        await call.commands.send(PlayAudio(speech(2.0), "r1"))
        await call.commands.send(MarkPlayback("response:r1"))
        await call.commands.send(EndCall("agent hung up"))
        await trio.sleep(5)
        assert call.page.closed_at is not None
        nursery.cancel_scope.cancel()

    frames = call.page.of("audio")
    assert len(frames) == 100 and call.audio_s() == 2.0  # 20 ms frames, nothing lost
    for i, (t, _) in enumerate(frames):
        assert i * 0.02 - LEAD_S - 1e-9 <= t - t0, (i, t - t0)  # never more than the lead ahead
    ((t_mark, mark),) = [(t, m) for t, m in call.heard if isinstance(m, PlaybackMarked)]
    assert mark == PlaybackMarked("response:r1") and abs(t_mark - t0 - 2.0) < 1e-6
    ((t_end, _),) = call.page.of("audio_end")
    assert t_end >= frames[-1][0]
    assert abs(call.page.closed_at - t0 - 2.0) < 1e-6  # closed once the last word played
    assert call.heard[-1][1] == CallerHungUp("caller hung up")  # so the supervisor winds down
    assert call.page.received[0][1] == {
        "event": "session",
        "session_id": str(call.ctx.session_id),
        "sample_rate": RATE,
        "agent": "desk",
    }


async def test_barge_in_stops_the_audio_at_once_and_reports_what_was_heard(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        call = Call(nursery)
        t0 = trio.current_time()
        await nursery.start(call.transport.run)
        await call.commands.send(PlayAudio(speech(2.0), "r1"))
        await call.commands.send(MarkPlayback("response:r1"))
        await trio.sleep(1.0)
        await call.commands.send(ClearPlayback())
        await trio.sleep(2.0)
        nursery.cancel_scope.cancel()

    ((t_clear, interrupted),) = call.page.of("audio_interrupted")
    assert abs(t_clear - t0 - 1.0) < 1e-6
    assert interrupted["response_id"] == "r1" and abs(interrupted["heard_ms"] - 1000) < 1
    assert all(t <= t_clear for t, _ in call.page.of("audio"))  # nothing after the clear
    # What was sent: what played, and at most the lead more (topped up in steps: at least
    # the lead less a step).
    assert 1.0 + LEAD_S - TOP_UP_S - 0.021 <= call.audio_s() <= 1.0 + LEAD_S + 0.021
    cleared = [(t, m) for t, m in call.heard if isinstance(m, PlaybackCleared)]
    ((_, report),) = cleared
    assert report.response_id == "r1" and abs(report.heard_ms - 1000) < 1
    assert 1000 + (LEAD_S - TOP_UP_S) * 1000 - 21 <= report.sent_ms <= 1000 + LEAD_S * 1000 + 21
    # The mark after the dropped audio is answered at once, as Twilio does on a clear.
    ((t_mark, _),) = [(t, m) for t, m in call.heard if isinstance(m, PlaybackMarked)]
    assert abs(t_mark - t0 - 1.0) < 1e-6


async def test_page_messages_become_caller_audio_and_text_and_bad_ones_are_logged(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        call = Call(nursery)
        await nursery.start(call.transport.run)
        frame = b"\x02\x00" * (RATE // 50)
        for _ in range(3):
            await call.page.to_server.send(wire.encode_inbound(wire.AudioIn(frame)))
        await call.page.to_server.send('{"event": "audio", "payload": "%%%"}')
        await call.page.to_server.send(wire.encode_inbound(wire.TextIn("hello there")))
        await call.page.to_server.send(wire.encode_inbound(wire.AudioIn(frame)))
        await trio.sleep(0.1)
        call.page.to_server.close()  # the page goes away
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()

    messages = [m for _, m in call.heard]
    audio = [m for m in messages if isinstance(m, CallerAudio)]
    assert [a.offset_ms for a in audio] == [0.0, 20.0, 40.0, 60.0]  # the bad frame took no time
    assert all(a.chunk == AudioChunk(frame, "pcm16", RATE) for a in audio)
    assert messages[-1] == CallerHungUp("caller hung up")
    events = []
    while True:
        try:
            events.append(call.events.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    assert [(e.type, e.payload.get("reason") or e.payload.get("text")) for e in events] == [
        ("error", "bad_base64"),
        ("caller.text", "hello there"),
    ]
    assert [m["reason"] for _, m in call.page.of("error")] == ["bad_base64"]
    # The typed line reaches the call as a caller turn, in order with the audio around it.
    kinds = [type(m).__name__ for m in messages]
    assert kinds == ["CallerAudio"] * 3 + ["CallerText", "CallerAudio", "CallerHungUp"]
    assert CallerText("hello there") in messages


async def test_call_events_become_the_pages_transcript_and_timeline(
    autojump_clock: trio.abc.Clock,
) -> None:
    events = [
        CallEvent("response.start", 1.0, {"response_id": "greeting", "greeting": True}),
        CallEvent("turn:agent", 2.0, {"text": "Hello", "response_id": "greeting"}),
        CallEvent("turn:user", 3.0, {"text": "hours please", "intent": "hours"}),
        CallEvent("tool:call", 4.0, {"call_id": "c1", "name": "lookup_hours", "arguments": {}}),
        CallEvent(
            "tool:result",
            5.0,
            {"call_id": "c1", "name": "lookup_hours", "ok": True, "output": "9 to 5"},
        ),
        CallEvent("response.done", 6.0, {"response_id": "r1", "interrupted": True}),
        CallEvent("provider.failed", 7.0, {"provider": "openai-realtime", "kind": "stall"}),
        CallEvent("playback.marked", 8.0, {"name": "response:r1"}),  # not shown
    ]
    async with trio.open_nursery() as nursery:
        call = Call(nursery)
        await nursery.start(call.transport.run)
        for event in events:
            await call.call_events.send(event)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert [m for _, m in call.page.received[1:]] == [
        {"event": "agent_start", "response_id": "greeting", "greeting": True},
        {"event": "transcript", "role": "agent", "text": "Hello", "final": True},
        {"event": "transcript", "role": "caller", "text": "hours please", "final": True},
        {"event": "tool_start", "call_id": "c1", "name": "lookup_hours", "arguments": {}},
        {
            "event": "tool_end",
            "call_id": "c1",
            "name": "lookup_hours",
            "ok": True,
            "output": "9 to 5",
        },
        {"event": "agent_end", "response_id": "r1", "interrupted": True},
        {
            "event": "timeline",
            "type": "provider.failed",
            "t_ms": 7.0,
            "detail": {"provider": "openai-realtime", "kind": "stall"},
        },
    ]
    assert page_message(events[-1]) is None


def test_a_transport_for_the_wrong_audio_format_is_refused() -> None:
    agent = AgentSpec(name="desk", tenant="acme", greeting="Hello", intents=())
    ctx = CallContext(
        uuid4(), uuid4(), uuid4(), agent, 0.0, caller_format=AudioFormat("pcmu", 8000)
    )
    send, receive = trio.open_memory_channel[Any](1)
    try:
        BrowserTransport(
            ctx, socket=FakePage(), inbox=receive, to_supervisor=send, events=EventSink(ctx, send)
        )
    except ValueError as exc:
        assert "PCM16" in str(exc)
    else:
        raise AssertionError("a G.711 browser call was accepted")
