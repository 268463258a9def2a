"""The call nursery on Trio's MockClock: a scripted provider, a fake Twilio, real actors.

What a caller would notice: the greeting starts at once, audio is never sent
far ahead of real time, the agent's goodbye is heard in full before the line
closes, and every event is logged in order with no gaps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from uuid import uuid4

import trio
from call_harness import LEAD_MS, FakeTwilio, MemoryStore, transport_for

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.frame_budget import MAX_BAD_PER_CALL
from switchboard.actors.messages import (
    AgentAudio,
    AgentTranscript,
    AudioChunk,
    CallerAudio,
    CallerTranscript,
    Outbox,
    ProviderReady,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    ToolCallRequested,
    ToolResult,
    ToProvider,
    TruncateResponse,
)
from switchboard.actors.twilio_transport import MARK_EVERY_MS, MAX_BAD_FRAMES_IN_A_ROW
from switchboard.codecs import twilio_media as wire
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.call import CallResources, run_call

AGENT = parse_agent_yaml(
    "name: t\ntenant: t\ngreeting: hi\nidle_timeout_seconds: 30\nintents:\n"
    "  - name: bye\n    phrases: [bye]\n    reply: bye\n    tool: hangup_call\n"
)


def scripted_chain(provider: object) -> object:
    """A stand-in for ``provider_chain``: one link, ``provider`` for every start."""
    return lambda ctx, res, http: (["scripted"], lambda mode, start: provider, [])


def tone(seconds: float) -> AudioChunk:
    return AudioChunk(b"\x10" * int(8000 * seconds), "pcmu", 8000)


async def scripted_provider(
    inbox: trio.MemoryReceiveChannel[ToProvider],
    outbox: Outbox,
    events: EventSink,
) -> None:
    """Greets (2 s of audio); answers the first caller audio with hangup_call and a 1 s goodbye."""
    await outbox.send(ProviderReady("scripted"))
    await outbox.send(ResponseStarted("greeting", greeting=True))
    await outbox.send(AgentAudio(tone(2.0), "greeting"))
    await outbox.send(AgentTranscript("hi", "greeting"))
    await outbox.send(ResponseDone("greeting"))
    answered = False
    async for message in inbox:
        if isinstance(message, CallerAudio) and not answered:
            answered = True
            await outbox.send(CallerTranscript("goodbye", 0.0, 20.0))
            await outbox.send(ResponseStarted("r1"))
            await outbox.send(ToolCallRequested("c1", "hangup_call", {}, "r1"))
        elif isinstance(message, ToolResult):
            await outbox.send(AgentAudio(tone(1.0), "r1"))
            await outbox.send(AgentTranscript("bye", "r1"))
            await outbox.send(ResponseDone("r1"))


async def test_a_call_greets_paces_audio_and_hangs_up_after_the_goodbye_is_heard(
    autojump_clock: trio.abc.Clock, monkeypatch: object
) -> None:
    import switchboard.orchestrator.call as call_module

    monkeypatch.setattr(  # type: ignore[attr-defined]
        call_module, "provider_chain", scripted_chain(scripted_provider)
    )
    store = MemoryStore()
    twilio = FakeTwilio()
    ctx = CallContext(
        uuid4(), uuid4(), uuid4(), AGENT, t0=trio.current_time(), call_sid="CA1", stream_sid="MZ1"
    )

    make_transport = transport_for(ctx, twilio)

    async with trio.open_nursery() as nursery:
        twilio.nursery = nursery
        caller = wire.InboundEncoder("MZ1", "CA1", "AC1")

        async def caller_speaks_after_greeting() -> None:
            await trio.sleep(2.5)
            await twilio.to_server.send(caller.media(b"\x20" * 160))

        nursery.start_soon(caller_speaks_after_greeting)
        report = await run_call(ctx, make_transport, CallResources(store=store))  # type: ignore[arg-type]

    # The greeting's first frame leaves at once.
    assert twilio.media_sent_at[0] - ctx.t0 < 0.01
    # Never more than the lead (plus the frame being sent) ahead of real time.
    assert max(twilio.audio_ahead_s) <= LEAD_MS / 1000 + 0.02 + 1e-9
    # 3 s of agent audio, 20 ms frames, and a mark per 100 ms of it at most (plus the
    # supervisor's marks after each answer and the end-of-call mark), not one per frame.
    assert len(twilio.media_sent_at) == 150
    assert len(twilio.marks) <= 3000 / MARK_EVERY_MS + 3
    # The line closes normally, only once the goodbye has been played.
    goodbye_end = dict(twilio.marks)["response:r1"]
    assert twilio.close_code == 1000
    assert twilio.closed_at is not None and twilio.closed_at >= goodbye_end
    assert report.turns_completed == 1 and report.end_reason == "agent hung up"

    seqs = sorted(store.events)
    assert seqs == list(range(1, len(seqs) + 1))
    types = [store.events[s].type for s in seqs]
    assert types[0] == "session.start" and types[-1] == "session.end"
    for expected in (
        "provider.ready",
        "response.start",
        "turn:agent",
        "tool:call",
        "tool:result",
        "hangup",
    ):
        assert expected in types
    assert types.index("tool:call") < types.index("tool:result") < types.index("hangup")
    t_ms = [store.events[s].t_ms for s in seqs]
    assert t_ms == sorted(t_ms)  # monotonic
    assert all(isinstance(store.events[s].ts, datetime) for s in seqs)
    json.dumps([store.events[s].payload for s in seqs])  # all JSON-safe
    assert store.finished[0]["turns"] == 1


async def silent_provider(
    inbox: trio.MemoryReceiveChannel[ToProvider],
    outbox: Outbox,
    events: EventSink,
) -> None:
    """Greets with 1 s of audio, then only listens."""
    await outbox.send(ProviderReady("silent"))
    await outbox.send(ResponseStarted("greeting", greeting=True))
    await outbox.send(AgentAudio(tone(1.0), "greeting"))
    await outbox.send(ResponseDone("greeting"))
    async for _ in inbox:
        pass


async def run_scripted_call(
    yaml_extra: str,
    provider: object,
    monkeypatch: object,
    caller_frames_s: float = 0.0,
    frame: Callable[[int], str] | None = None,
) -> tuple[CallContext, FakeTwilio, MemoryStore, object]:
    """Run a call on the fake Twilio; the caller sends a frame every 20 ms for
    ``caller_frames_s`` (``frame(i)``, by default a media frame of silence)."""
    import switchboard.orchestrator.call as call_module

    monkeypatch.setattr(  # type: ignore[attr-defined]
        call_module, "provider_chain", scripted_chain(provider)
    )
    agent = parse_agent_yaml(
        "name: t\ntenant: t\ngreeting: hi\n"
        + yaml_extra
        + "intents:\n  - name: bye\n    phrases: [bye]\n    reply: bye\n"
    )
    store, twilio = MemoryStore(), FakeTwilio()
    ctx = CallContext(uuid4(), uuid4(), uuid4(), agent, t0=trio.current_time(), stream_sid="MZ1")

    make_transport = transport_for(ctx, twilio)

    async with trio.open_nursery() as nursery:
        twilio.nursery = nursery
        caller = wire.InboundEncoder("MZ1", "CA1", "AC1")

        async def line_noise() -> None:  # a phone sends frames all the time
            for i in range(int(caller_frames_s / 0.02)):
                await trio.sleep(0.02)
                await twilio.to_server.send(
                    frame(i) if frame is not None else caller.media(b"\xff" * 160)
                )

        nursery.start_soon(line_noise)
        report = await run_call(ctx, make_transport, CallResources(store=store))  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()
    return ctx, twilio, store, report


async def test_a_silent_caller_is_hung_up_on_after_the_idle_timeout(
    autojump_clock: trio.abc.Clock, monkeypatch: object
) -> None:
    ctx, twilio, store, report = await run_scripted_call(
        "idle_timeout_seconds: 12\n", silent_provider, monkeypatch, caller_frames_s=60
    )
    assert report.end_reason == "no caller speech for 12 s"  # type: ignore[attr-defined]
    assert twilio.closed_at is not None
    assert 12.0 <= twilio.closed_at - ctx.t0 <= 12.5
    assert [e.type for e in store.events.values()][-1] == "session.end"


async def test_a_peer_that_sends_only_garbage_is_cut_off_a_few_bad_frames_are_not(
    autojump_clock: trio.abc.Clock, monkeypatch: object
) -> None:
    """Issue 11: 10,000 bad frames wrote 10,000 error rows. Twilio never sends garbage:
    after MAX_BAD_FRAMES_IN_A_ROW in a row, or MAX_BAD_PER_CALL in the call, the call
    ends (1008, and session.end says why); fewer are skipped."""
    good = wire.InboundEncoder("MZ1", "CA1", "AC1").media(b"\xff" * 160)
    bad = ["{not json", json.dumps({"event": "dance"}), "[1]"]

    def garbage(i: int) -> str:
        return bad[i % len(bad)]

    ctx, twilio, store, report = await run_scripted_call(
        "idle_timeout_seconds: 12\n", silent_provider, monkeypatch, 60, garbage
    )
    assert report.end_reason == "transport failed: too many malformed frames"  # type: ignore[attr-defined]
    assert twilio.close_code == 1008
    assert twilio.closed_at is not None and twilio.closed_at - ctx.t0 < 3.0  # not after 60 s
    types = [e.type for e in store.events.values()]
    cut = types.index("disconnect")
    assert types[cut - MAX_BAD_FRAMES_IN_A_ROW : cut] == ["error"] * MAX_BAD_FRAMES_IN_A_ROW
    disconnect = list(store.events.values())[cut].payload
    assert disconnect["reason"] == "too many malformed frames"
    reasons = {e.payload["reason"] for e in store.events.values() if e.type == "error"}
    assert reasons == {"invalid_json", "unknown_event", "not_an_object"}

    def mostly_garbage(i: int) -> str:  # never 20 in a row, but 9 in every 10 frames
        return good if i % 10 == 0 else garbage(i)

    _, twilio, store, report = await run_scripted_call(
        "idle_timeout_seconds: 12\n", silent_provider, monkeypatch, 60, mostly_garbage
    )
    assert twilio.close_code == 1008
    errors = [e for e in store.events.values() if e.type == "error"]
    assert len(errors) == MAX_BAD_PER_CALL
    assert [e.payload["detail"] for e in store.events.values() if e.type == "disconnect"] == [
        f"{MAX_BAD_PER_CALL} unusable frames in the call"
    ]

    def now_and_then(i: int) -> str:  # one bad frame a second
        return garbage(i) if i % 50 == 0 else good

    _, twilio, store, report = await run_scripted_call(
        "idle_timeout_seconds: 12\n", silent_provider, monkeypatch, 60, now_and_then
    )
    assert report.end_reason == "no caller speech for 12 s"  # type: ignore[attr-defined]
    assert twilio.close_code == 1000


async def test_a_frame_over_the_size_cap_ends_the_call_with_1009(
    autojump_clock: trio.abc.Clock, monkeypatch: object
) -> None:
    good = wire.InboundEncoder("MZ1", "CA1", "AC1").media(b"\xff" * 160)
    huge = "[" + " " * wire.MAX_INBOUND_CHARS + "]"
    _, twilio, store, report = await run_scripted_call(
        "idle_timeout_seconds: 12\n",
        silent_provider,
        monkeypatch,
        60,
        lambda i: huge if i == 50 else good,
    )
    assert twilio.close_code == 1009
    assert report.end_reason == "transport failed: frame too large"  # type: ignore[attr-defined]
    (error,) = [e.payload for e in store.events.values() if e.type == "error"]
    assert error["reason"] == "too_large"


async def test_a_call_is_ended_at_max_call_seconds(
    autojump_clock: trio.abc.Clock, monkeypatch: object
) -> None:
    ctx, twilio, _, report = await run_scripted_call(
        "max_call_seconds: 45\nidle_timeout_seconds: 600\n",
        silent_provider,
        monkeypatch,
        caller_frames_s=100,
    )
    assert report.end_reason == "max_call_seconds reached"  # type: ignore[attr-defined]
    assert twilio.closed_at is not None and 45.0 <= twilio.closed_at - ctx.t0 <= 45.5


async def test_a_call_cancelled_by_shutdown_still_logs_every_event(
    autojump_clock: trio.abc.Clock, monkeypatch: object
) -> None:
    with trio.move_on_after(0.5):  # the server shuts down mid-greeting
        await run_scripted_call("", silent_provider, monkeypatch, caller_frames_s=60)
    # run_scripted_call could not return its store: find it through the call module's
    # MemoryStore instances instead.
    stores = [s for s in MemoryStore.instances if s.events]
    events = stores[-1].events
    assert sorted(events) == list(range(1, len(events) + 1))
    assert events[max(events)].type == "session.end"
    assert stores[-1].finished  # the session row was closed too


class BargeInProvider:
    """Greets; answers the caller with 10 s of audio sent at once, as realtime models do.

    Two seconds into the answer it reports caller speech (its VAD); after the
    truncation it answers again with 1 s of audio.
    """

    def __init__(self) -> None:
        self.speech_started_at: float | None = None
        self.truncations: list[tuple[TruncateResponse, float]] = []

    async def __call__(
        self,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        outbox: Outbox,
        events: EventSink,
    ) -> None:
        await outbox.send(ProviderReady("barge-in"))
        await outbox.send(ResponseStarted("greeting", greeting=True))
        await outbox.send(AgentAudio(tone(1.0), "greeting"))
        await outbox.send(ResponseDone("greeting"))
        async with trio.open_nursery() as nursery:
            async for message in inbox:
                if isinstance(message, CallerAudio) and self.speech_started_at is None:
                    self.speech_started_at = -1.0
                    nursery.start_soon(self._long_answer, outbox)
                elif isinstance(message, TruncateResponse):
                    self.truncations.append((message, trio.current_time()))
                    await outbox.send(ResponseDone("r1", interrupted=True))
                    await outbox.send(ResponseStarted("r2"))
                    await outbox.send(AgentAudio(tone(1.0), "r2"))
                    await outbox.send(ResponseDone("r2"))

    async def _long_answer(self, outbox: Outbox) -> None:
        await trio.sleep(1.5)  # the caller spoke during the greeting; it has played now
        await outbox.send(ResponseStarted("r1"))
        for _ in range(100):
            await outbox.send(AgentAudio(tone(0.1), "r1"))
        await trio.sleep(2.0)
        self.speech_started_at = trio.current_time()
        await outbox.send(SpeechStarted(offset_ms=3500.0))
        for _ in range(5):  # in flight when the caller spoke: must never be played
            await outbox.send(AgentAudio(tone(0.1), "r1"))


async def test_barge_in_clears_at_once_truncates_at_the_heard_mark_and_the_next_answer_plays(
    autojump_clock: trio.abc.Clock, monkeypatch: object
) -> None:
    provider = BargeInProvider()
    _, twilio, store, _ = await run_scripted_call(
        "idle_timeout_seconds: 8\n", provider, monkeypatch, caller_frames_s=0.02
    )
    spoke = provider.speech_started_at
    assert spoke is not None and spoke > 0
    # `clear` reaches Twilio within 100 ms of the speech-start signal, not behind 8 s of audio.
    assert len(twilio.clears) == 1
    assert twilio.clears[0] - spoke <= 0.1
    # The truncation names what the caller heard, exact to one mark interval: two seconds
    # into the answer, as Twilio's echoes before the clear confirmed.
    ((truncate, _),) = provider.truncations
    assert truncate.response_id == "r1"
    assert 2000 - MARK_EVERY_MS <= truncate.heard_ms <= 2000
    echoed_before_clear = [name for name, at in twilio.echoed if at < twilio.clears[0]]
    assert echoed_before_clear, "the heard position comes from echoed marks"
    # Nothing of r1 is sent after the clear; the next answer (1 s) is.
    after = twilio.outbound[twilio.outbound.index("clear") + 1 :]
    assert after.count("media") == 50
    barge = [e for e in store.events.values() if e.type == "barge_in"]
    assert len(barge) == 1
    assert barge[0].payload["heard_ms"] == truncate.heard_ms
    assert barge[0].payload["sent_ms"] > truncate.heard_ms  # audio was queued ahead
