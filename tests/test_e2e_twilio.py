"""End to end: a real server on loopback, a real PostgreSQL, calls placed as Twilio would.

The server runs in-process (hypercorn on 127.0.0.1, any free port) on a fresh
database of the session's embedded PostgreSQL; calls go through
``switchboard call``'s client, which signs the webhook, follows the TwiML and
speaks Media Streams over a real WebSocket.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trio
import trio_websocket

from switchboard.codecs import twilio_media as wire
from switchboard.orchestrator import devcreds
from switchboard.orchestrator.caller import CallerLine, CallError, place_call, post_webhook
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.server import serve

DEMO = "+15005550006"
SPEECH = Path(__file__).parent / "data" / "speech"


@dataclass
class Server:
    url: str
    database_url: str
    creds: devcreds.DevCredentials

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, args).fetchall()


@pytest.fixture
async def server(database_url: str, tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Server]:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        database_url=database_url,
        twilio_auth_token="test-auth-token",
        playout_lead_ms=60_000,
        log_format="console",
    )
    urls = await nursery.start(serve, settings)
    creds = devcreds.load(tmp_path)
    assert creds is not None
    yield Server(urls[0], database_url, creds)
    nursery.cancel_scope.cancel()


def words(text: str | None) -> list[str]:
    return re.findall(r"[a-z']+", (text or "").lower())


def word_error_rate(reference: str, hypothesis: str | None) -> float:
    ref, hyp = words(reference), words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))


async def call(server: Server, *lines: CallerLine, **kw: Any) -> Any:
    return await place_call(
        server.url,
        list(lines),
        to_number=DEMO,
        auth_token="test-auth-token",
        api_key=server.creds.api_key,
        realtime=False,
        **kw,
    )


async def test_a_test_call_says_when_it_cannot_read_the_logged_events(server: Server) -> None:
    """Issue 11: against a server of another data folder `switchboard call` printed null
    transcripts without saying why; now it names the cause."""
    line = CallerLine.say("thank you goodbye")
    refused = await place_call(
        server.url,
        [line],
        to_number=DEMO,
        auth_token="test-auth-token",
        api_key="sb_" + "x" * 32,
        realtime=False,
    )
    assert refused.events_unread and "refused the API key" in refused.events_unread
    assert refused.events_logged is None
    keyless = await place_call(
        server.url,
        [line],
        to_number=DEMO,
        auth_token="test-auth-token",
        api_key=None,
        realtime=False,
    )
    assert keyless.events_unread and "no API key" in keyless.events_unread
    logged = await call(server, line)
    assert logged.events_unread is None and logged.events_logged


async def test_demo_call_hours_then_goodbye(server: Server, tmp_path: Path) -> None:
    heard = tmp_path / "heard.wav"
    summary = await call(
        server,
        CallerLine.say("what are your opening hours"),
        CallerLine.say("thank you goodbye"),
        save_audio=heard,
    )
    assert summary.greeting_latency_ms is not None and summary.greeting_latency_ms < 500
    assert summary.greeting and "Bright Smile Dental" in summary.greeting
    hours, goodbye = summary.turns
    assert hours.agent and "Monday to Friday" in hours.agent and "8 AM to 6 PM" in hours.agent
    assert goodbye.agent and "Goodbye" in goodbye.agent
    assert summary.ended_by == "agent"
    assert heard.stat().st_size > 8000 * 2 * 5  # more than 5 s of agent speech was heard

    (session_id,) = server.rows(
        "select id from voice_sessions where call_sid = %s", summary.call_sid
    )[0]
    seqs = [
        r[0]
        for r in server.rows(
            "select seq from call_events where session_id = %s order by seq", session_id
        )
    ]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == summary.events_logged
    types = [
        r[0]
        for r in server.rows(
            "select type from call_events where session_id = %s order by seq", session_id
        )
    ]
    assert types[0] == "session.start" and types[-1] == "session.end"
    assert types.count("turn:user") == 2 and "tool:call" in types and "hangup" in types
    with trio.fail_after(30):  # the end is recorded just after session.end is logged
        while server.rows("select 1 from call_logs where session_id = %s", session_id) == []:
            await trio.sleep(0.05)
    (status,) = server.rows("select status from voice_sessions where id = %s", session_id)[0]
    assert status == "ended"
    assert server.rows(
        "select turns, end_reason from call_logs where session_id = %s", session_id
    ) == [(2, "agent hung up")]


async def test_a_real_recorded_caller_is_transcribed_close_to_the_reference(server: Server) -> None:
    reference = "go forward ten meters"
    summary = await call(server, CallerLine.wav(SPEECH / "recorded" / "goforward.wav"))
    (turn,) = summary.turns
    assert word_error_rate(reference, turn.caller) <= 0.5, turn.caller
    assert turn.agent  # answered (no intent: the agent's no-match reply)


async def test_unsigned_or_wrongly_signed_webhook_is_refused_and_creates_nothing(
    server: Server,
) -> None:
    params = {"CallSid": "CA" + "0" * 32, "From": "+15005550001", "To": DEMO}
    async with httpx.AsyncClient() as client:
        unsigned = await client.post(server.url + "/twilio/incoming", data=params)
        assert unsigned.status_code == 403
        with pytest.raises(CallError, match="signature"):
            await post_webhook(client, server.url, "not-the-token", params)
    assert server.rows("select count(*) from voice_sessions") == [(0,)]


async def stream_with(
    server: Server,
    parameters: dict[str, str],
    first: str | None = None,
    call_sid: str = "CA" + "2" * 32,
) -> int | None:
    """Open the Media Stream of ``call_sid`` with ``parameters``; return the close code the
    server used."""
    enc = wire.InboundEncoder("MZ" + "1" * 32, call_sid, "AC" + "1" * 32)
    url = server.url.replace("http://", "ws://") + "/twilio/stream"
    async with trio_websocket.open_websocket_url(url) as ws:
        await ws.send_message(enc.connected())
        await ws.send_message(first if first is not None else enc.start(parameters))
        with trio.fail_after(5):
            try:
                while True:
                    await ws.get_message()
            except trio_websocket.ConnectionClosed as closed:
                return closed.reason.code
    return None


async def test_stream_admission_tokens_are_required_checked_and_single_use(server: Server) -> None:
    async with httpx.AsyncClient() as client:
        params = {"CallSid": "CA" + "2" * 32, "From": "+15005550001", "To": DEMO}
        _, parameters = await post_webhook(client, server.url, "test-auth-token", params)
    session_id = parameters["session_id"]
    assert await stream_with(server, {}) == 1008  # missing
    assert await stream_with(server, {**parameters, "token": "forged"}) == 1008  # wrong
    other_call = "CA" + "3" * 32  # the real token, presented by another call's stream
    assert await stream_with(server, parameters, call_sid=other_call) == 1008
    enc = wire.InboundEncoder("MZ1", "CA1", "AC1")
    assert (
        await stream_with(server, parameters, first=enc.media(b"\xff" * 160)) == 1008
    )  # media first
    assert server.rows("select count(*) from call_events where session_id = %s", session_id) == [
        (0,)
    ]
    assert server.rows(
        "select admitted_at is null from voice_sessions where id = %s", session_id
    ) == [(True,)]

    # The real token admits once...
    async with trio.open_nursery() as nursery:
        first_close: list[int | None] = []

        async def admitted() -> None:
            first_close.append(await stream_with(server, parameters))

        nursery.start_soon(admitted)
        with trio.fail_after(10):
            while not server.rows("select 1 from call_events where session_id = %s", session_id):
                await trio.sleep(0.05)
        # ... and a second use is refused while the first call runs.
        assert await stream_with(server, parameters) == 1008
        nursery.cancel_scope.cancel()


async def test_malformed_frames_are_logged_and_the_calls_go_on(server: Server) -> None:
    """Two calls at once; one gets garbage frames mid-call; both complete their turn."""
    garbage = [
        "{not json",
        json.dumps({"event": "dance"}),
        json.dumps({"event": "media", "streamSid": "MZ", "media": {"payload": "%%%"}}),
    ]
    results: dict[str, Any] = {}

    async def one(name: str, inject: list[str]) -> None:
        results[name] = await call(
            server, CallerLine.say("what are your opening hours"), inject=inject
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "noisy", garbage)
        nursery.start_soon(one, "clean", [])
    for name in ("noisy", "clean"):
        (turn,) = results[name].turns
        assert turn.agent and "Monday to Friday" in turn.agent, name
    noisy = results["noisy"]
    errors = server.rows(
        "select payload->>'reason' from call_events e join voice_sessions s on s.id = e.session_id "
        "where s.call_sid = %s and e.type = 'error' order by seq",
        noisy.call_sid,
    )
    assert [r[0] for r in errors] == ["invalid_json", "unknown_event", "bad_base64"]
    clean_errors = server.rows(
        "select count(*) from call_events e join voice_sessions s on s.id = e.session_id "
        "where s.call_sid = %s and e.type = 'error'",
        results["clean"].call_sid,
    )
    assert clean_errors == [(0,)]


async def test_metrics_are_served_in_prometheus_text(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(server.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE switchboard_failover_events_total counter" in response.text


async def test_call_sockets_decline_permessage_deflate(server: Server) -> None:
    """A client that offers compression (most WebSocket clients do) gets a plain socket:
    base64 audio does not compress, and zlib on every frame costs CPU."""
    host, port = server.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            b"GET /twilio/stream HTTP/1.1\r\n"
            b"Host: " + host.encode() + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        )
        response = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in response:
                response += await stream.receive_some(4096)
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert head.startswith("http/1.1 101")
    assert "sec-websocket-extensions" not in head
