"""Browser calls end to end: a real server on loopback, PostgreSQL, the local agent, a WS client.

The client speaks the browser protocol as the practice page does, at a
sample rate of its choosing, and sees what a user would: the greeting's
audio and text, its line transcribed, the tool the agent ran, the answer,
and the line closing after the agent's goodbye.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import structlog
import trio
import trio_websocket
from browser_support import Harness, messages, of, say, start_harness

from switchboard.codecs import browser_protocol as wire
from switchboard.orchestrator.admission import Admission
from switchboard.orchestrator.browser_routes import PageFeed
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.server import drain
from switchboard.orchestrator.store import EventRow, Store


@pytest.fixture
async def h(
    store: Store,
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> Harness:
    return await start_harness(nursery, store, database_url, tmp_path, monkeypatch)


@pytest.mark.parametrize("rate", [16000, 48000])
async def test_a_browser_call_greets_answers_runs_the_tool_and_hangs_up(
    h: Harness, rate: int
) -> None:
    session = await h.new_session(test_mode=True)
    url = f"{h.ws_url}/v1/voice?sample_rate={rate}"
    async with trio_websocket.open_websocket_url(
        url, subprotocols=["switchboard.v1", session["token"]]
    ) as ws:
        greeting = await messages(
            ws, lambda m: of(m, "transcript", role="agent") and of(m, "audio_end"), 20
        )
        assert greeting[0] == {
            "event": "session",
            "session_id": session["session_id"],
            "sample_rate": rate,
            "agent": "receptionist",
        }
        assert of(greeting, "agent_start", greeting=True)
        assert "Bright Smile Dental" in of(greeting, "transcript")[0]["text"]
        audio = [wire.parse_outbound(json.dumps(m)) for m in of(greeting, "audio")]
        assert audio and all(len(a.pcm) == rate // 50 * 2 for a in audio[:-1])  # 20 ms frames
        pcm = np.frombuffer(b"".join(a.pcm for a in audio), dtype="<i2")  # type: ignore[union-attr]
        assert np.abs(pcm).max() > 1000  # speech, not silence

        # A malformed frame is reported and skipped; the call goes on.
        await ws.send_message('{"event": "audio", "payload": "%%%"}')
        await say(ws, "what are your opening hours", rate)
        seen = await messages(
            ws, lambda m: len(of(m, "transcript", role="agent")) >= 1 and of(m, "tool_end"), 30
        )
        assert of(seen, "error")[0]["reason"] == "bad_base64"
        assert of(seen, "transcript", role="caller")
        assert of(seen, "tool_start", name="lookup_hours") and of(seen, "tool_end", ok=True)
        (answer,) = of(seen, "transcript", role="agent")
        assert "Monday to Friday" in answer["text"]

        await say(ws, "thank you goodbye", rate)
        with trio.fail_after(30):
            rest: list[dict[str, Any]] = []
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                while True:
                    rest.append(json.loads(await ws.get_message()))
        assert closed.value.reason.code == 1000  # the agent hung up, after its goodbye
        assert any("Goodbye" in m["text"] for m in of(rest, "transcript", role="agent"))

    status_sql = "select status from voice_sessions where id = %s"
    with trio.move_on_after(10):
        while h.rows(status_sql, session["session_id"]) != [("ended",)]:
            await trio.sleep(0.05)
    assert h.rows(status_sql, session["session_id"]) == [("ended",)], (
        session["session_id"],
        h.rows("select id, status, started_at, ended_at from voice_sessions"),
        h.rows("select session_id, end_reason from call_logs"),
    )
    types = [
        r[0]
        for r in h.rows(
            "select type from call_events where session_id = %s order by seq",
            session["session_id"],
        )
    ]
    assert types[0] == "session.start" and types[-1] == "session.end"
    assert types.count("turn:user") == 2 and "hangup" in types
    (fmt,) = h.rows(
        "select payload->'caller_format' from call_events where session_id = %s and seq = 1",
        session["session_id"],
    )[0]
    assert fmt == {"encoding": "pcm16", "sample_rate": rate}


async def test_a_draining_server_refuses_calls_without_spending_the_token(h: Harness) -> None:
    session = await h.new_session()
    h.rt.draining = True
    with pytest.raises(trio_websocket.ConnectionRejected) as caught:
        async with trio_websocket.open_websocket_url(
            f"{h.ws_url}/v1/voice?token={session['token']}"
        ):
            pass
    assert caught.value.status_code == 503
    h.rt.draining = False
    async with trio_websocket.open_websocket_url(
        f"{h.ws_url}/v1/voice?token={session['token']}"
    ) as ws:
        (first,) = await messages(ws, lambda m: len(m) == 1, 10)
        assert first["event"] == "session"


async def test_an_unsupported_sample_rate_is_refused_before_the_token_is_spent(h: Harness) -> None:
    session = await h.new_session()
    with pytest.raises(trio_websocket.ConnectionRejected) as caught:
        async with trio_websocket.open_websocket_url(
            f"{h.ws_url}/v1/voice?sample_rate=8000&token={session['token']}"
        ):
            pass
    assert caught.value.status_code == 400
    assert h.rows("select count(*) from session_token_uses") == [(0,)]
    assert h.calls_started == []


async def test_drain_waits_for_the_calls_in_flight_then_gives_up_at_its_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    runtime: Any = SimpleNamespace(
        draining=False, active_calls=2, admission=Admission.in_process(), settings=Settings()
    )
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        done: list[bool] = []

        async def draining() -> None:
            done.append(await drain(runtime, timeout_s=60))

        nursery.start_soon(draining)
        await trio.sleep(1)
        assert runtime.draining and not done  # no new calls; the two go on
        runtime.active_calls = 0  # both hung up at 1 s
    assert done == [True] and trio.current_time() - t0 < 1.2

    runtime.active_calls = 1  # a call that never ends
    t1 = trio.current_time()
    assert await drain(runtime, timeout_s=60) is False
    assert abs(trio.current_time() - t1 - 60) < 0.2


def _row(seq: int, type_: str) -> EventRow:
    payload = {"text": "hello"} if type_.startswith("turn:") else {}
    return EventRow(seq=seq, type=type_, ts=datetime.now(UTC), t_ms=10.0 * seq, payload=payload)


async def test_the_page_feed_takes_shown_events_as_logged_and_drops_when_the_page_lags() -> None:
    """The page's events come from the event logger (never PostgreSQL); the logger is
    never made to wait: past ``size`` events behind, the newest are dropped and counted,
    with one warning per stretch of drops."""
    with structlog.testing.capture_logs() as logs:
        with PageFeed(size=2) as feed:
            feed.on_logged(_row(1, "session.start"))  # not shown on the page: not queued
            for seq in (2, 3, 4, 5):
                feed.on_logged(_row(seq, "turn:agent"))
            assert feed.dropped == 2
            assert (await feed.events.receive()).t_ms == 20.0
            feed.on_logged(_row(6, "tool:call"))  # room again
            feed.on_logged(_row(7, "tool:result"))  # behind again: a new warning
        got = [(e.type, e.t_ms) async for e in feed.events]  # the feed ends with the call
    assert got == [("turn:agent", 30.0), ("tool:call", 60.0)]
    warnings = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert warnings == [
        "page too slow for the call's events; dropping",
        "page too slow for the call's events; dropping",
        "events the page never saw",
    ]
