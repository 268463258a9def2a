"""Issue 11: ``WS /v1/voice`` is total: no frame kills a call, disturbs another or leaves a
traceback.

One real server for the module (:mod:`door_fuzz`). Each hypothesis example makes a
session (``POST /v1/sessions``), opens a browser call with its token, waits for the
greeting, then sends arbitrary frames mixed into the call's valid audio: valid-shaped
browser messages with fuzzed field values, raw garbage, binary frames, deep nesting,
frames around the size cap. The call either goes on (every unusable frame is answered
with an ``error`` message and logged as an ``error`` event; a ``text`` line sent after
the frames is answered; the page's hang-up is "caller hung up") or the server closes it
with 1008/1009 and a reason, and ``session.end`` says so. The server logs no traceback
and no unwritten event. A witness call, open through every example, answers the
opening-hours question at the end.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio
import trio_websocket
from door_fuzz import (
    HUGE_INTEGERS,
    NON_FINITE,
    ODD_TEXT,
    LiveServer,
    Peer,
    Witness,
    dumps,
    fuzz_the_door,
    live_server,
    mutated,
    raw_frames,
)
from hypothesis import strategies as st

from switchboard.actors.local.tts import synthesize_at
from switchboard.codecs import browser_protocol as wire
from switchboard.orchestrator.embedded_pg import EmbeddedPostgres

RATE = 16000
SILENCE_20MS = bytes(RATE // 50 * 2)


# A failing example of frames near the size cap prints long; the warning would hide it.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


@pytest.fixture(scope="module")
def server(
    pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with live_server(pg_server, tmp_path_factory.mktemp("browser-door")) as live:
        yield live


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- frames ---------------------------------------------------------------------------------


def browser_frames() -> st.SearchStrategy[str | bytes]:
    """A frame a broken or hostile page might send: mostly a valid message with a field
    changed, else garbage."""
    payload = st.one_of(
        st.binary(max_size=700).map(b64),  # odd lengths included
        st.sampled_from(["%%%", "AAA", "A", "====", "\x00", " AAAA ", "AAAA\n"]),
        st.sampled_from([wire.MAX_AUDIO_BYTES, wire.MAX_AUDIO_BYTES + 2]).map(
            lambda n: b64(bytes(n))
        ),
        HUGE_INTEGERS,
        NON_FINITE,
    )
    event = st.one_of(ODD_TEXT, st.sampled_from(["Audio", "session", "error", "audio "]))
    audio = mutated(
        {"event": "audio", "payload": b64(SILENCE_20MS)},
        {("event",): event, ("payload",): payload, ("sample_rate",): HUGE_INTEGERS},
    )
    text = mutated(
        {"event": "text", "text": "hello"},
        {("event",): event, ("text",): st.one_of(ODD_TEXT, st.text(max_size=50))},
    )
    shaped = st.one_of(audio, audio, text)
    binary_json = audio.map(str.encode)  # JSON in a binary frame
    return st.one_of(shaped, shaped, shaped, binary_json, raw_frames(wire.MAX_INBOUND_CHARS))


@st.composite
def streams(draw: st.DrawFn) -> list[str | bytes | None]:
    """Hostile frames mixed into a valid stream (None: 20 ms of valid audio)."""
    frames: list[str | bytes | None] = draw(
        st.lists(st.one_of(browser_frames(), st.none()), min_size=1, max_size=30)
    )
    return frames


ISSUE_11_FRAMES: list[str | bytes | None] = [
    None,
    '{"event":"audio","x":' + "[" * 100_000 + "]" * 100_000 + "}",  # RecursionError
    '{"event":"text","text":"a\\u0000b"}',  # U+0000 cannot be logged
    '{"event":"text","text":"\\ud800"}',  # nor a lone surrogate
    None,
    '{"event":"audio","payload":"AAA"}',
    '{"event":"\\u0000"}',
    None,
]


def typed(frame: str | bytes) -> wire.Inbound | None:
    """The frame as the codec reads it (the oracle), None if it is unusable."""
    try:
        return wire.parse_inbound(frame)
    except wire.BrowserProtocolError:
        return None


def unusable(frame: str | bytes) -> bool:
    """Whether the call must answer this frame with an ``error``."""
    return typed(frame) is None


# -- one call ---------------------------------------------------------------------------------


@dataclass
class Outcome(Peer):
    session_id: str = ""
    sent: list[str | bytes] = field(default_factory=list)
    sent_everything: bool = False
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


async def new_session(server: LiveServer) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            server.url + "/v1/sessions",
            json={"agent_id": server.agent_id},
            headers={"Authorization": f"Bearer {server.api_key}"},
        )
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


def opened(server: LiveServer, session: dict[str, Any]) -> Any:
    url = f"{server.ws_url}/v1/voice?sample_rate={RATE}"
    return trio_websocket.open_websocket_url(url, subprotocols=["switchboard.v1", session["token"]])


def errors_to_page(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in received if m["event"] == "error"]


async def fuzz_call(server: LiveServer, stream: list[str | bytes | None]) -> Outcome:
    log_mark = server.log.mark()
    session = await new_session(server)
    outcome = Outcome(session_id=session["session_id"])

    def answers() -> int:  # typed lines the call took as caller turns (shown back as such)
        lines = {t.text for t in map(typed, outcome.sent) if isinstance(t, wire.TextIn)}
        return len(
            [
                m
                for m in outcome.received
                if m.get("event") == "transcript"
                and m.get("role") == "caller"
                and m.get("text") in lines | {"still there?"}
            ]
        )

    async with opened(server, session) as ws, trio.open_nursery() as nursery:
        nursery.start_soon(outcome.listen, ws)
        await outcome.until(lambda: outcome.received)  # mid-call: the greeting is playing
        try:
            for frame in stream:
                text = frame if frame is not None else audio(SILENCE_20MS)
                await ws.send_message(text)
                outcome.sent.append(text)
            await ws.send_message(dumps({"event": "text", "text": "still there?"}))
            lines = 1 + sum(isinstance(typed(f), wire.TextIn) for f in outcome.sent)
            await outcome.until(lambda: answers() >= lines)  # goes on, and each is answered...
            outcome.sent_everything = outcome.close_code is None
        except trio_websocket.ConnectionClosed as closed:  # seen here before the listener
            outcome.closed(closed)
        await ws.aclose()  # ... and the page hangs up
        nursery.cancel_scope.cancel()
    outcome.events = await server.ended(outcome.session_id, log_mark)
    return outcome


def audio(pcm: bytes) -> str:
    return dumps({"event": "audio", "payload": b64(pcm)})


def check(outcome: Outcome) -> None:
    events = outcome.events
    (end,) = [p for t, p in events if t == "session.end"]
    if outcome.close_code in (1008, 1009):
        assert outcome.close_reason, "a policy close says why"
        assert end["reason"] != "caller hung up", end
        (disconnect,) = [p for t, p in events if t == "disconnect"]
        assert disconnect["reason"] and disconnect["detail"]
        return
    assert outcome.sent_everything, (outcome.close_code, outcome.close_reason)
    assert end["reason"] == "caller hung up", end
    expected = sum(unusable(f) for f in outcome.sent)
    assert len(errors_to_page(outcome.received)) == expected, (outcome.received, outcome.sent)
    logged = [p for t, p in events if t == "error" and p.get("where") == "browser.stream"]
    assert len(logged) == expected
    assert [p["text"] for t, p in events if t == "caller.text"][-1] == "still there?"


class BrowserWitness(Witness):
    async def talk(self) -> None:
        peer = Peer()

        def agent_lines() -> list[str]:
            return [
                m["text"]
                for m in peer.received
                if m["event"] == "transcript" and m["role"] == "agent"
            ]

        session = await new_session(self.server)
        async with opened(self.server, session) as ws, trio.open_nursery() as nursery:
            nursery.start_soon(peer.listen, ws)
            await peer.until(lambda: len(agent_lines()) >= 1)  # the greeting
            self.greeted.set()
            await self.go.wait()
            pcm = synthesize_at("what are your opening hours", RATE).tobytes() + bytes(RATE * 3)
            step = RATE // 50 * 2
            for i in range(0, len(pcm), step):
                await ws.send_message(audio(pcm[i : i + step]))
            await peer.until(lambda: len(agent_lines()) >= 2)
            self.answer = agent_lines()[1] if len(agent_lines()) >= 2 else None
            nursery.cancel_scope.cancel()


def test_any_frames_mid_call_leave_the_call_whole_and_other_calls_undisturbed(
    server: LiveServer,
) -> None:
    def one_call(stream: list[str | bytes | None]) -> None:
        check(server.run(fuzz_call, server, stream))

    fuzz_the_door(server, BrowserWitness(server), streams(), ISSUE_11_FRAMES, one_call)


def test_a_page_sending_garbage_or_a_huge_frame_is_cut_off_with_a_reason(
    server: LiveServer,
) -> None:
    garbage = server.run(fuzz_call, server, ["{"] * 25)
    assert (garbage.close_code, garbage.close_reason) == (1008, "too many malformed frames")
    assert garbage.events[-1][1]["reason"] == "transport failed: too many malformed frames"
    huge = server.run(fuzz_call, server, [None, "x" * (wire.MAX_INBOUND_CHARS + 1), None])
    assert (huge.close_code, huge.close_reason) == (1009, "frame too large")
    assert huge.events[-1][1]["reason"] == "transport failed: frame too large"
    for outcome in (garbage, huge):  # the call's log row says it too
        logged = server.run(server.end_reason_logged, outcome.session_id)
        assert logged == outcome.events[-1][1]["reason"]
    assert server.log.problems == []
