"""A crash is recorded as a crash (issue 11): when an actor raises, the call ends with
``error: <class>: <message>`` in ``session.end`` and the call's log row, an ``error``
event names the exception, and the caller's socket closes with 1011 and the cause,
not 1000 "call ended" and "caller hung up" as before."""

from __future__ import annotations

import trio
from test_call_wiring import run_scripted_call, silent_provider

from switchboard.actors.supervisor import Supervisor
from switchboard.actors.twilio_transport import TwilioTransport
from switchboard.codecs import twilio_media as wire

DTMF = wire.InboundEncoder("MZ1", "CA1", "AC1").dtmf("5")


def caller_presses_5(i: int) -> str:
    return DTMF if i == 50 else wire.InboundEncoder("MZ1", "CA1", "AC1").media(b"\xff" * 160)


async def test_a_transport_that_raises_ends_the_call_as_an_error_with_1011(
    autojump_clock: trio.abc.Clock, monkeypatch: object
) -> None:
    async def broken(self: TwilioTransport, message: wire.Inbound) -> None:
        raise ValueError("invalid literal for int() with base 10: 'abc'")

    monkeypatch.setattr(TwilioTransport, "_forward", broken)  # type: ignore[attr-defined]
    ctx, twilio, store, report = await run_scripted_call(
        "idle_timeout_seconds: 30\n", silent_provider, monkeypatch, 5, caller_presses_5
    )
    expected = "error: ValueError: invalid literal for int() with base 10: 'abc'"
    assert report.end_reason == expected  # type: ignore[attr-defined]
    assert twilio.close_code == 1011
    assert twilio.close_reason == expected
    assert twilio.closed_at is not None and twilio.closed_at - ctx.t0 < 1.5  # at once, not at 30 s
    events = list(store.events.values())
    assert events[-1].type == "session.end"
    assert events[-1].payload["reason"] == expected
    crash = [e.payload for e in events if e.type == "error" and e.payload["where"] == "call"]
    assert crash == [
        {
            "where": "call",
            "reason": "crashed",
            "exception": "ValueError",
            "detail": "invalid literal for int() with base 10: 'abc'",
        }
    ]
    assert store.finished[-1]["end_reason"] == expected
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # nothing lost


async def test_a_supervisor_that_raises_closes_the_socket_with_the_cause(
    autojump_clock: trio.abc.Clock, monkeypatch: object
) -> None:
    original = Supervisor._handle

    async def broken(self: Supervisor, message: object) -> None:
        if type(message).__name__ == "CallerDtmf":
            raise KeyError("x" * 300)  # a long message: the close reason is cut to 123 bytes
        await original(self, message)  # type: ignore[arg-type]

    monkeypatch.setattr(Supervisor, "_handle", broken)  # type: ignore[attr-defined]
    _, twilio, store, report = await run_scripted_call(
        "idle_timeout_seconds: 30\n", silent_provider, monkeypatch, 5, caller_presses_5
    )
    assert report.end_reason.startswith("error: KeyError: 'xxx")  # type: ignore[attr-defined]
    assert twilio.close_code == 1011
    assert len(twilio.close_reason.encode()) == 123
    assert report.end_reason.startswith(twilio.close_reason)  # type: ignore[attr-defined]
    assert list(store.events.values())[-1].type == "session.end"
