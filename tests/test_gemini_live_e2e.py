"""End to end: a phone call through the real runtime to the fake Gemini Live server.

The runtime (hypercorn on loopback, a real PostgreSQL) answers a Twilio-style
call for an agent whose ``mode`` is ``gemini-live``; its provider reaches the
fake over a real WebSocket on 127.0.0.1. The caller says three things; the
first needs the ``lookup_hours`` tool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import trio

from switchboard.actors.local.wavfile import read_wav
from switchboard.actors.providers import Endpoints
from switchboard.orchestrator import devcreds
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.caller import CallerLine, place_call
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.server import serve
from switchboard.orchestrator.store import Store
from switchboard.testing import Script, ToolStep, Turn
from switchboard.testing import serve as serve_fake
from switchboard.testing.fake_gemini_live import FakeGeminiLive
from switchboard.testing.speech import speak_bytes

NUMBER = "+15005550007"
AGENT = f"""
name: gemini-receptionist
tenant: demo
phone_numbers: ["{NUMBER}"]
greeting: Thanks for calling Bright Smile Dental.
instructions: You are the receptionist of Bright Smile Dental.
mode: gemini-live
hours: {{monday: "08:00-18:00"}}
intents:
  - {{name: bye, phrases: [goodbye], reply: Goodbye.}}
"""
SCRIPT = Script(
    greeting="Thanks for calling Bright Smile Dental, how can I help?",
    turns=(
        Turn(
            say="Let me look that up.",
            tool=ToolStep("lookup_hours"),
            then_say="We are open on Monday from eight to six.",
            caller_text="when are you open",
        ),
        Turn(say="Yes, we take new patients.", caller_text="do you take new patients"),
        Turn(say="You are welcome, goodbye.", caller_text="thanks that is all"),
    ),
)


@pytest.fixture
async def gemini_server(
    database_url: str, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[tuple[str, str, FakeGeminiLive]]:
    fake = FakeGeminiLive(SCRIPT)
    port = await nursery.start(serve_fake, fake.handler)
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        database_url=database_url,
        twilio_auth_token="test-auth-token",
        playout_lead_ms=60_000,
        log_format="console",
        endpoints=Endpoints(gemini_live_url=f"ws://127.0.0.1:{port}/ws/live"),
    )
    urls = await nursery.start(serve, settings)
    with Database(database_url) as db:
        Store(db).apply_agent(parse_agent_yaml(AGENT))
    creds = devcreds.load(tmp_path)
    assert creds is not None
    yield urls[0], creds.api_key, fake
    nursery.cancel_scope.cancel()


async def test_a_three_turn_phone_call_with_a_tool_call(
    gemini_server: tuple[str, str, FakeGeminiLive], database_url: str, tmp_path: Path
) -> None:
    url, api_key, fake = gemini_server
    heard = tmp_path / "heard.wav"
    summary = await place_call(
        url,
        [
            CallerLine.say("when are you open"),
            CallerLine.say("do you take new patients"),
            CallerLine.say("thanks that is all"),
        ],
        to_number=NUMBER,
        auth_token="test-auth-token",
        api_key=api_key,
        realtime=False,
        save_audio=heard,
    )
    assert summary.greeting == SCRIPT.greeting
    assert [(t.caller, t.agent) for t in summary.turns] == [
        (t.caller_text, t.text) for t in SCRIPT.turns
    ]
    assert all(t.response_latency_ms is not None for t in summary.turns)

    # The caller heard every answer (G.711 mu-law 8 kHz, decoded by the phone): at least
    # as much audio as the fake spoke, at 8 kHz.
    rate, pcm = read_wav(heard)
    spoken_s = sum(
        len(speak_bytes(text, 24000)) / 2 / 24000
        for text in (SCRIPT.greeting, *(t.say for t in SCRIPT.turns), SCRIPT.turns[0].then_say)
    )
    assert rate == 8000 and len(pcm) / rate >= 0.95 * spoken_s

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select type, payload from call_events e join voice_sessions s on s.id = e.session_id"
            " where s.call_sid = %s order by seq",
            (summary.call_sid,),
        ).fetchall()
    types = [r[0] for r in rows]
    payloads = {r[0]: r[1] for r in rows}
    assert rows[0][1]["provider"] == "gemini-live"
    assert types.count("turn:user") == 3 and types.count("turn:agent") == 4
    assert payloads["tool:call"]["name"] == "lookup_hours"
    assert payloads["tool:result"]["ok"] and "Monday" in payloads["tool:result"]["output"]
    assert "provider.failed" not in types and fake.connections == 1
