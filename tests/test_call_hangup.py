"""A caller who hangs up mid-answer ends the call then, not when the answer would have
finished playing (issue 11 fault suite: session.end came 7 s after the stop)."""

from __future__ import annotations

import trio
from test_call_wiring import run_scripted_call, tone

from switchboard.actors.context import EventSink
from switchboard.actors.messages import (
    AgentAudio,
    Outbox,
    ProviderReady,
    ResponseDone,
    ResponseStarted,
    ToProvider,
)
from switchboard.codecs import twilio_media as wire

CALLER = wire.InboundEncoder("MZ1", "CA1", "AC1")


async def long_greeting(
    inbox: trio.MemoryReceiveChannel[ToProvider], outbox: Outbox, events: EventSink
) -> None:
    """Greets with 10 s of audio, sent at once (providers send faster than real time)."""
    await outbox.send(ProviderReady("long"))
    await outbox.send(ResponseStarted("greeting", greeting=True))
    await outbox.send(AgentAudio(tone(10.0), "greeting"))
    await outbox.send(ResponseDone("greeting"))
    async for _ in inbox:
        pass


def hang_up_after_one_second(i: int) -> str:
    return CALLER.stop() if i == 50 else CALLER.media(b"\xff" * 160)


async def test_a_hang_up_mid_answer_ends_the_call_at_once(
    autojump_clock: trio.abc.Clock, monkeypatch: object
) -> None:
    ctx, twilio, store, report = await run_scripted_call(
        "idle_timeout_seconds: 30\n", long_greeting, monkeypatch, 3, hang_up_after_one_second
    )
    assert report.end_reason == "caller hung up"  # type: ignore[attr-defined]
    end = list(store.events.values())[-1]
    assert end.type == "session.end"
    assert end.t_ms < 1500  # the stop came at 1 s; 9 s of greeting were left unplayed
    assert twilio.closed_at is not None and twilio.closed_at - ctx.t0 < 1.5
