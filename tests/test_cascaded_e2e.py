"""End to end: a phone call to a ``cascaded`` agent, with the three fakes on loopback.

The real server (hypercorn, embedded PostgreSQL), a caller speaking Media
Streams as Twilio would, and the fakes as separate servers on 127.0.0.1:
Deepgram live over a real WebSocket, chat completions and TTS over real
HTTP (hypercorn). Three turns, one of them with a tool call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import trio
from test_e2e_twilio import DEMO, Server

from switchboard.actors.local import tts
from switchboard.actors.local.wavfile import read_wav
from switchboard.actors.providers import Endpoints
from switchboard.orchestrator import devcreds
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.agents import hours_sentence
from switchboard.orchestrator.caller import CallerLine, place_call
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.server import serve
from switchboard.orchestrator.store import Store
from switchboard.testing import Script, ToolStep, Turn
from switchboard.testing import serve as serve_websocket
from switchboard.testing.fake_chat import FakeChat
from switchboard.testing.fake_deepgram import FakeDeepgram
from switchboard.testing.fake_tts import FakeTTS
from switchboard.testing.http import serve_http

EXAMPLE = Path(__file__).parent.parent / "examples" / "receptionist.yaml"
SCRIPT = Script(
    turns=(
        Turn(
            caller_text="what are your opening hours",
            say="Let me check.",
            tool=ToolStep("lookup_hours"),
            then_say="We are open Monday to Friday from eight to six.",
        ),
        Turn(
            caller_text="I would like to book an appointment",
            say="Of course. Which day suits you best?",
        ),
        Turn(caller_text="thank you goodbye", say="Thank you for calling. Goodbye!"),
    )
)


def voiced_s(pcm: np.ndarray) -> float:
    """Seconds of 20 ms frames at 8 kHz loud enough to be speech."""
    frames = pcm[: len(pcm) // 160 * 160].astype(np.float64).reshape(-1, 160)
    return float((np.sqrt((frames**2).mean(axis=1)) > 300).sum()) * 0.02


@dataclass
class Fakes:
    stt: FakeDeepgram
    chat: FakeChat
    tts: FakeTTS


@pytest.fixture
async def cascaded(
    database_url: str, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[tuple[Server, Fakes]]:
    fakes = Fakes(FakeDeepgram(SCRIPT), FakeChat(SCRIPT), FakeTTS(SCRIPT))
    stt_port = await nursery.start(serve_websocket, fakes.stt.handler)
    chat_url = await nursery.start(serve_http, fakes.chat.handler)
    tts_url = await nursery.start(serve_http, fakes.tts.handler)
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        database_url=database_url,
        twilio_auth_token="test-auth-token",
        playout_lead_ms=60_000,
        log_format="console",
        endpoints=Endpoints(
            stt_url=f"ws://127.0.0.1:{stt_port}/v1/listen",
            llm_base_url=f"{chat_url}/v1",
            llm_model="fake-llama",
            tts_base_url=f"{tts_url}/v1",
        ),
    )
    urls = await nursery.start(serve, settings)
    creds = devcreds.load(tmp_path)
    assert creds is not None
    spec = parse_agent_yaml(
        EXAMPLE.read_text().replace("mode: local", "mode: cascaded"), str(EXAMPLE)
    )
    with Database(database_url) as db:
        Store(db).apply_agent(spec)
    yield Server(urls[0], database_url, creds), fakes
    nursery.cancel_scope.cancel()


async def test_a_three_turn_phone_call_with_a_tool_call_through_the_cascaded_fakes(
    cascaded: tuple[Server, Fakes], tmp_path: Path
) -> None:
    server, fakes = cascaded
    heard = tmp_path / "heard.wav"
    lines = [CallerLine.say(t.caller_text) for t in SCRIPT.turns]
    summary = await place_call(
        server.url,
        lines,
        to_number=DEMO,
        auth_token="test-auth-token",
        api_key=server.creds.api_key,
        realtime=False,
        save_audio=heard,
    )

    # The caller heard the greeting and each scripted answer, as phone audio.
    assert summary.greeting_latency_ms is not None and summary.greeting_latency_ms < 500
    # A California caller (the test caller's FromState): the example agent records, so the
    # cascaded voice says the consent line first (issue 12).
    assert summary.greeting == (
        "This call is recorded. Thanks for calling Bright Smile Dental. How can I help you today?"
    )
    assert [t.caller for t in summary.turns] == [t.caller_text for t in SCRIPT.turns]
    assert [t.agent for t in summary.turns] == [t.text for t in SCRIPT.turns]
    assert all(t.response_latency_ms is not None for t in summary.turns)
    rate, pcm = read_wav(heard)  # decoded from the mu-law 8 kHz media the caller received
    spoken = [summary.greeting, *(t.text for t in SCRIPT.turns)]
    expected_s = sum(voiced_s(tts.synthesize_at(text, 8000)) for text in spoken)
    assert rate == 8000 and voiced_s(pcm) == pytest.approx(expected_s, rel=0.1)

    # What the fakes were sent: phone audio as is, the tool's real result to the model.
    assert fakes.stt.queries[0]["encoding"] == "mulaw"
    assert fakes.stt.queries[0]["sample_rate"] == "8000"
    spec = parse_agent_yaml(EXAMPLE.read_text(), str(EXAMPLE))
    tool_message = fakes.chat.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == hours_sentence(spec)
    assert len(fakes.chat.requests) == 4  # three turns, one of them asked again with the result

    # The call's event log.
    (session_id,) = server.rows(
        "select id from voice_sessions where call_sid = %s", summary.call_sid
    )[0]
    events = server.rows(
        "select type, payload from call_events where session_id = %s order by seq", session_id
    )
    types = [t for t, _ in events]
    assert next(p for t, p in events if t == "session.start")["provider"] == "cascaded"
    assert [p["text"] for t, p in events if t == "turn:user"] == [
        t.caller_text for t in SCRIPT.turns
    ]
    (call,) = [p for t, p in events if t == "tool:call"]
    (result,) = [p for t, p in events if t == "tool:result"]
    assert call["name"] == "lookup_hours" and result["call_id"] == call["call_id"]
    assert result["ok"] is True and result["output"] == hours_sentence(spec)
    assert types.count("response.done") == 4 and "provider.failed" not in types
    with trio.fail_after(30):  # the end is recorded just after session.end is logged
        while server.rows("select 1 from call_logs where session_id = %s", session_id) == []:
            await trio.sleep(0.05)
    assert server.rows("select turns from call_logs where session_id = %s", session_id) == [(3,)]
