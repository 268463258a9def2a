"""End to end: a phone call through the real runtime to the fake OpenAI Realtime server.

The server runs in-process on loopback with a fresh database of the session's
embedded PostgreSQL, its ``openai-realtime`` endpoint pointed at
:class:`FakeOpenAIRealtime` on another loopback port; the call is placed as
Twilio would (signed webhook, TwiML, Media Streams) by ``switchboard call``'s
client. The caller says three things; the second answer needs the
``lookup_hours`` tool, run by the runtime.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from openai_realtime_harness import check_wire

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
from switchboard.testing.fake_openai_realtime import FakeOpenAIRealtime

NUMBER = "+15005550123"
AGENT = parse_agent_yaml(
    f"""
name: realtime-receptionist
tenant: demo
greeting: Thanks for calling Bright Smile Dental.
instructions: You are the receptionist of a dental clinic.
mode: openai-realtime
phone_numbers: ["{NUMBER}"]
intents: []
hours: {{monday: "08:00-18:00", tuesday: "08:00-18:00"}}
"""
)
SCRIPT = Script(
    greeting="Thanks for calling Bright Smile Dental. How can I help?",
    turns=(
        Turn(caller_text="hello is this the dentist", say="Yes, this is Bright Smile Dental."),
        Turn(
            caller_text="when are you open",
            tool=ToolStep("lookup_hours", {}),
            then_say="We are open Monday and Tuesday, eight to six.",
        ),
        Turn(caller_text="thank you", say="You are welcome. Goodbye!"),
    ),
)


@pytest.fixture
async def fake(nursery: trio.Nursery) -> AsyncIterator[tuple[FakeOpenAIRealtime, int]]:
    fake = FakeOpenAIRealtime(SCRIPT)
    port = await nursery.start(serve_fake, fake.handler)
    yield fake, port


async def test_a_three_turn_phone_call_with_a_tool_call(
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    fake: tuple[FakeOpenAIRealtime, int],
) -> None:
    server, port = fake
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        database_url=database_url,
        twilio_auth_token="test-auth-token",
        playout_lead_ms=60_000,
        log_format="console",
        endpoints=Endpoints(openai_realtime_url=f"ws://127.0.0.1:{port}/v1/realtime"),
    )
    urls = await nursery.start(serve, settings)
    creds = devcreds.load(tmp_path)
    assert creds is not None
    with Database(database_url) as db:
        Store(db).apply_agent(AGENT)

    summary = await place_call(
        urls[0],
        [
            CallerLine.say("hello is this the dentist"),
            CallerLine.say("when are you open"),
            CallerLine.say("thank you"),
        ],
        to_number=NUMBER,
        auth_token="test-auth-token",
        api_key=creds.api_key,
        realtime=False,
        save_audio=tmp_path / "heard.wav",
    )

    # The caller heard the greeting and an answer to each line.
    assert summary.greeting_latency_ms is not None
    assert len(summary.turns) == 3
    assert all(t.response_latency_ms is not None for t in summary.turns), summary.turns
    assert [t.caller for t in summary.turns] == [t.caller_text for t in SCRIPT.turns]
    assert [t.agent for t in summary.turns] == [t.text for t in SCRIPT.turns]
    # ... as G.711 mu-law 8 kHz, byte for byte what the provider sent (pass-through).
    sent = b"".join(
        base64.b64decode(e["delta"])
        for e in server.sent
        if e["type"] == "response.output_audio.delta"
    )
    heard_bytes = (tmp_path / "heard.wav").stat().st_size
    assert len(sent) > 8000 * 4  # several seconds of speech
    assert heard_bytes >= len(sent) * 2  # PCM16 WAV of at least all of it

    session = server.received[0]
    assert session["type"] == "session.update"
    assert session["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    outputs = [e["item"] for e in server.received if e["type"] == "conversation.item.create"]
    assert len(outputs) == 1 and outputs[0]["type"] == "function_call_output"
    assert "Monday" in outputs[0]["output"]  # the runtime's lookup_hours answered
    check_wire(server)

    rows = _rows(
        database_url,
        "select type, payload from call_events e join voice_sessions s on s.id = e.session_id"
        " where s.call_sid = %s order by seq",
        summary.call_sid,
    )
    types = [t for t, _ in rows]
    assert types[0] == "session.start" and types[-1] == "session.end"
    assert rows[0][1]["provider"] == "openai-realtime"
    said = [p["text"] for t, p in rows if t == "turn:user"]
    assert said == [t.caller_text for t in SCRIPT.turns]
    answers = [p["text"] for t, p in rows if t == "turn:agent"]
    assert answers == [SCRIPT.greeting, *(t.text for t in SCRIPT.turns)]
    (call,) = [p for t, p in rows if t == "tool:call"]
    (result,) = [p for t, p in rows if t == "tool:result"]
    assert call["name"] == result["name"] == "lookup_hours" and result["ok"]
    assert result["output"] == outputs[0]["output"] and call["call_id"] == result["call_id"]
    (report,) = [p for t, p in rows if t == "supervisor.report"]
    assert report["turns_completed"] == 3 and report["provider"] == "openai-realtime"
    assert "provider.failed" not in types


def _rows(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()
