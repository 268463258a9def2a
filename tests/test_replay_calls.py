"""Real calls, recorded through the real server, replay to the events they logged.

One server for the module (``replay_support.served``: hypercorn on loopback, the
embedded PostgreSQL, recordings on, the fake OpenAI Realtime behind an agent
that falls back to ``local``). Each test places a call through one door as its
caller would (Twilio Media Streams, the browser's ``WS /v1/voice``, the
OpenAI-compatible ``WS /v1/realtime``), in real time, with one thing going
wrong or right: a tool call, a barge-in, a stall mid-answer and a failover, a
503 at the provider's handshake, a provider found cooling down after another
call's failure. The call's trace (as ``switchboard trace
export`` writes it) is replayed twice in a worker process: the replay has the
logged events (same order and payloads, times within the comparison's
tolerance for a call recorded on the wall clock), and the two replays are
byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import trio
import trio_parallel
import trio_websocket
from pg_support import fresh_database
from replay_support import AGENT, AUTH_TOKEN, NUMBER, Served, jsons, media, replay_twice, served

from switchboard.actors.local.tts import synthesize_at, synthesize_ulaw
from switchboard.codecs import twilio_media as wire
from switchboard.orchestrator.caller import CallerLine, Phone, place_call, post_webhook, twilio_sid
from switchboard.orchestrator.embedded_pg import EmbeddedPostgres
from switchboard.orchestrator.replay.compare import compare_events
from switchboard.orchestrator.trace_file import Trace, write_trace
from switchboard.testing import Fault, Script, ToolStep, Turn

LONG = (
    "We are open from nine in the morning until five in the evening on weekdays, and on "
    "Saturdays from ten until two, except on public holidays when we are closed all day."
)
GREETING = "Thanks for calling Bright Smile Dental."


@pytest.fixture(scope="module")
def srv(pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with (
        fresh_database(pg_server, "replay") as url,
        served(url, tmp_path_factory.mktemp("replay-server")) as server,
    ):
        yield server


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def assert_replays(trace: Trace, path: Path) -> list[dict[str, Any]]:
    """Replay ``trace`` twice (from its file, in a worker process); the replay matches the
    recording and the second is byte-identical to the first. The recorded events."""
    write_trace(path, trace)
    first, second, walls = await trio_parallel.run_sync(replay_twice, str(path))
    print(f"replay wall time of {path.name}: {walls[0]:.3f} s, {walls[1]:.3f} s")
    got = json.loads(first)
    comparison = compare_events(trace.events, got)
    assert comparison.matches, comparison.first.describe() if comparison.first else ""
    assert first == second, "two replays of one trace differ"
    return trace.events


# -- Twilio Media Streams ------------------------------------------------------


async def test_a_phone_call_with_a_tool_call_replays_to_its_events(
    srv: Served, tmp_path: Path
) -> None:
    srv.use(
        Script(
            greeting=GREETING,
            turns=(
                Turn(
                    caller_text="when are you open",
                    tool=ToolStep("lookup_hours", {}),
                    then_say="We are open Monday and Tuesday.",
                ),
            ),
        )
    )
    summary = await place_call(
        srv.url,
        [CallerLine.say("when are you open")],
        to_number=NUMBER,
        auth_token=AUTH_TOKEN,
        api_key=srv.api_key,
        realtime=True,
    )
    assert summary.session_id is not None
    assert [t.agent for t in summary.turns] == ["We are open Monday and Tuesday."]
    trace = await srv.trace(srv.session_of("twilio", summary.call_sid))
    events = await assert_replays(trace, tmp_path / "tool.trace")
    (call,) = [e["payload"] for e in events if e["type"] == "tool:call"]
    (result,) = [e["payload"] for e in events if e["type"] == "tool:result"]
    assert call["name"] == "lookup_hours" and result["ok"] and "Monday" in result["output"]


async def test_a_phone_call_with_a_barge_in_replays_to_its_events(
    srv: Served, tmp_path: Path
) -> None:
    srv.use(
        Script(
            greeting=GREETING,
            turns=(
                Turn(caller_text="when are you open", say=LONG),
                Turn(caller_text="thank you goodbye", say="Goodbye."),
            ),
        )
    )
    call_sid = twilio_sid("CA")
    params = {
        "CallSid": call_sid,
        "AccountSid": twilio_sid("AC"),
        "From": "+15005550001",
        "To": NUMBER,
        "Direction": "inbound",
        "CallStatus": "ringing",
        "FromState": "TX",
    }
    async with httpx.AsyncClient(timeout=10.0) as client:
        stream_url, parameters = await post_webhook(client, srv.url, AUTH_TOKEN, params)
    encoder = wire.InboundEncoder(twilio_sid("MZ"), call_sid, params["AccountSid"])
    async with (
        trio_websocket.open_websocket_url(stream_url) as ws,
        trio.open_nursery() as nursery,
    ):
        phone = Phone(ws, encoder, realtime=True)
        nursery.start_soon(phone.listen, nursery)
        await ws.send_message(encoder.connected())
        start = trio.current_time()
        await ws.send_message(encoder.start(parameters))
        nursery.start_soon(phone.microphone)
        assert await phone.wait_response(start, 20) is not None
        spoke = await phone.speak(synthesize_ulaw("when are you open"))
        # the caller talks over the long answer once it has heard a second of it
        assert await phone.wait_for(lambda: any(t >= spoke for t in phone.media_times), 20)
        await trio.sleep(1.0)
        interrupted = await phone.speak(synthesize_ulaw("thank you goodbye"))
        assert await phone.wait_response(interrupted, 20) is not None
        await ws.send_message(encoder.stop())
        await ws.aclose()
        nursery.cancel_scope.cancel()
    trace = await srv.trace(srv.session_of("twilio", call_sid))
    events = await assert_replays(trace, tmp_path / "barge-in.trace")
    (barge_in,) = [e["payload"] for e in events if e["type"] == "barge_in"]
    assert 0 < barge_in["heard_ms"] < 10_000
    answers = [e["payload"] for e in events if e["type"] == "turn:agent"]
    assert [a["interrupted"] for a in answers] == [False, True, False]


# -- the browser ------------------------------------------------------------------


async def browser_say(ws: trio_websocket.WebSocketConnection, text: str, rate: int) -> None:
    """The caller's line then a second of silence, one 20 ms message every 20 ms."""
    pcm = synthesize_at(text, rate).tobytes() + bytes(rate * 2)
    step = rate // 50 * 2
    next_s = trio.current_time()
    for i in range(0, len(pcm), step):
        await ws.send_message(json.dumps({"event": "audio", "payload": media(pcm[i : i + step])}))
        next_s += 0.02
        await trio.sleep_until(next_s)


async def read_until(
    ws: trio_websocket.WebSocketConnection, seen: list[dict[str, Any]], until: Any, timeout_s: float
) -> None:
    with trio.fail_after(timeout_s):
        while not until(seen):
            seen.append(jsons(await ws.get_message()))


async def test_a_browser_call_that_stalls_mid_answer_and_fails_over_replays_to_its_events(
    srv: Served, tmp_path: Path
) -> None:
    srv.use(
        Script(
            greeting=GREETING,
            turns=(Turn(caller_text="when are you open", say=LONG),),
            faults=(Fault("stall", turn=1, after_audio_ms=400),),
        )
    )
    session = await srv.browser_session()
    rate = 16000
    seen: list[dict[str, Any]] = []
    async with trio_websocket.open_websocket_url(
        f"{srv.ws_url}/v1/voice?sample_rate={rate}",
        subprotocols=["switchboard.v1", session["token"]],
    ) as ws:
        await read_until(ws, seen, lambda s: any(m["event"] == "audio_end" for m in s), 20)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(browser_say, ws, "when are you open", rate)

            # local's answer (the intent's reply, after lookup_hours) ends
            def answered(s: list[dict[str, Any]]) -> bool:
                said = [
                    i
                    for i, m in enumerate(s)
                    if m["event"] == "transcript"
                    and m["role"] == "agent"
                    and m["text"].startswith("We are open")
                    and m["text"] != LONG
                ]
                return bool(said) and any(m["event"] == "audio_end" for m in s[said[0] :])

            await read_until(ws, seen, answered, 30)
        await ws.aclose()
    trace = await srv.trace(srv.session_of("browser"))
    events = await assert_replays(trace, tmp_path / "stall.trace")
    failed = [e["payload"] for e in events if e["type"] == "provider.failed"]
    switched = [e["payload"] for e in events if e["type"] == "failover.switch"]
    assert [f["kind"] for f in failed] == ["stall"]
    assert [(s["from"], s["to"]) for s in switched] == [("openai-realtime", "local")]


# -- /v1/realtime ------------------------------------------------------------------


async def realtime_call(srv: Served, agent_id: UUID, line: str | None) -> None:
    """A Realtime client on ``agent_id`` in G.711 mu-law: it hears the greeting, says
    ``line`` (if any) in real time and hears the answer, then closes."""
    url = f"{srv.ws_url}/v1/realtime?agent_id={agent_id}"
    headers = [(b"authorization", f"Bearer {srv.api_key}".encode())]
    speech = synthesize_ulaw(line) + b"\xff" * 8000 * 2 if line else b""
    dones = 0
    async with trio_websocket.open_websocket_url(url, extra_headers=headers) as ws:
        fmt = {"format": {"type": "audio/pcmu"}}
        update = {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": fmt, "output": fmt}},
        }
        await ws.send_message(json.dumps(update))
        with trio.fail_after(30):
            while dones < 1:
                if jsons(await ws.get_message())["type"] == "response.done":
                    dones += 1
            async with trio.open_nursery() as nursery:

                async def talk() -> None:
                    next_s = trio.current_time()
                    for i in range(0, len(speech), 160):
                        chunk = {
                            "type": "input_audio_buffer.append",
                            "audio": media(speech[i : i + 160]),
                        }
                        await ws.send_message(json.dumps(chunk))
                        next_s += 0.02
                        await trio.sleep_until(next_s)

                nursery.start_soon(talk)
                while speech and dones < 2:
                    if jsons(await ws.get_message())["type"] == "response.done":
                        dones += 1
        await ws.aclose()


async def test_a_realtime_call_refused_with_503_at_connect_replays_to_its_events(
    srv: Served, tmp_path: Path
) -> None:
    srv.use(Script(greeting=GREETING, faults=(Fault("http_5xx", turn=0, status=503),)))
    await realtime_call(srv, srv.agent_id, "when are you open")
    trace = await srv.trace(srv.session_of("realtime"))
    events = await assert_replays(trace, tmp_path / "503.trace")
    failed = [e["payload"] for e in events if e["type"] == "provider.failed"]
    assert [(f["provider"], f["kind"]) for f in failed] == [("openai-realtime", "http_5xx")]
    greeting = next(e["payload"] for e in events if e["type"] == "turn:agent")
    assert greeting["text"] == GREETING  # the local link greeted in the fake's place
    assert "realtime.session.update" in types(events)


async def test_a_call_that_found_the_provider_cooling_down_replays_to_its_events(
    srv: Served, tmp_path: Path
) -> None:
    """The server's provider health is shared by its calls: after one call's 503, the next
    call of an agent with a cooldown skips the provider from its start. Its replay skips it
    too (the cooldown is not in the call's own events but in what it found)."""
    cooling = replace(
        AGENT,
        name="cooling-receptionist",
        phone_numbers=(),
        failover=replace(AGENT.failover, cooldown_seconds=600),
    )
    agent_id = await trio.to_thread.run_sync(srv.store.apply_agent, cooling)
    srv.use(Script(greeting=GREETING, faults=(Fault("http_5xx", turn=0, status=503),)))
    await realtime_call(srv, agent_id, None)  # fails over (or skips): the circuit is open
    reached = srv.fake.connections
    await realtime_call(srv, agent_id, None)
    trace = await srv.trace(srv.session_of("realtime"))
    events = await assert_replays(trace, tmp_path / "cooling.trace")
    (skipped,) = [e["payload"] for e in events if e["type"] == "failover.suppressed"]
    assert (skipped["provider"], skipped["reason"]) == ("openai-realtime", "cooling_down")
    assert 0 < skipped["remaining_ms"] <= 600_000  # how long it still cools down, as a number
    assert "provider.failed" not in types(events)
    assert srv.fake.connections == reached  # the second call never reached the provider
