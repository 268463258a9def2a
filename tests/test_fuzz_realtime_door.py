"""Issue 11: ``WS /v1/realtime`` is total: no client event kills a call, disturbs another or
leaves a traceback.

One real server for the module (:mod:`door_fuzz`). Each hypothesis example connects as
an OpenAI Realtime client (tenant API key, ``?agent_id=``), fixes the format with a
``session.update``, waits for the greeting's audio, then sends arbitrary frames mixed
into valid audio appends: client events of every modelled type with fuzzed field values
(a ``conversation.item.truncate`` of the greeting's real item among them), unknown
types, raw garbage, binary frames, deep nesting, frames around the size cap. The call
either goes on (every unusable frame gets an ``error`` event and is logged; an
``input_audio_buffer.clear`` sent after the frames is answered; the client's close is
"client closed the connection") or the server closes it with 1008/1009 and a reason,
and ``session.end`` says so. The server logs no traceback and no unwritten event. A
witness call, open through every example, answers the opening-hours question at the end.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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
    json_values,
    live_server,
    mutated,
    raw_frames,
)
from hypothesis import strategies as st

from switchboard.actors.local.tts import synthesize_at
from switchboard.codecs import openai_realtime as wire
from switchboard.orchestrator.embedded_pg import EmbeddedPostgres

RATE = 24000
SILENCE_20MS = bytes(RATE // 50 * 2)
ITEM = "@ITEM@"
"""Replaced, when sent, by the id of the greeting's assistant item."""
PCM = {"type": "audio/pcm", "rate": RATE}
SESSION_UPDATE = dumps(
    {
        "type": "session.update",
        "session": {"audio": {"input": {"format": PCM}, "output": {"format": PCM}}},
    }
)
CLEAR = dumps({"type": "input_audio_buffer.clear", "event_id": "after-the-frames"})


# A failing example of frames near the size cap prints long; the warning would hide it.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


@pytest.fixture(scope="module")
def server(
    pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    with live_server(pg_server, tmp_path_factory.mktemp("realtime-door")) as live:
        yield live


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def append(pcm: bytes) -> str:
    return dumps({"type": "input_audio_buffer.append", "audio": b64(pcm)})


# -- frames ---------------------------------------------------------------------------------


def realtime_frames() -> st.SearchStrategy[str | bytes]:
    """A frame a broken or hostile Realtime client might send: mostly a valid client
    event with a field or two changed, else garbage."""
    number = st.one_of(HUGE_INTEGERS, NON_FINITE, st.integers(), ODD_TEXT)
    name = st.one_of(ODD_TEXT, st.text(max_size=12))
    audio = mutated(
        {"type": "input_audio_buffer.append", "audio": b64(SILENCE_20MS), "event_id": "a"},
        {
            ("audio",): st.one_of(
                st.binary(max_size=500).map(b64),
                st.sampled_from(["%%%", "AAA", "A", "", "\x00"]),
            ),
            ("event_id",): ODD_TEXT,
        },
    )
    session = mutated(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": "be brief",
                "audio": {
                    "input": {
                        "format": PCM,
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    },
                    "output": {"format": PCM, "voice": "alloy"},
                },
                "tools": [{"type": "function", "name": "f", "parameters": {}}],
            },
        },
        {
            ("session",): json_values(),
            ("session", "audio"): json_values(),
            ("session", "audio", "input", "format"): st.one_of(
                st.sampled_from(["g711_ulaw", "g711_alaw", "pcm16", "mp3"]),
                st.fixed_dictionaries({"type": st.just("audio/pcm"), "rate": number}),
            ),
            ("session", "audio", "input", "turn_detection"): st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["server_vad", "semantic_vad", "none"]),
                    "silence_duration_ms": number,
                    "threshold": number,
                }
            ),
            ("session", "audio", "output", "voice"): ODD_TEXT,
            ("session", "tools"): st.lists(json_values(), max_size=3),
            ("session", "instructions"): ODD_TEXT,
        },
    )
    item = mutated(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello"}],
            },
        },
        {
            ("item",): json_values(),
            ("item", "type"): st.sampled_from(["function_call", "function_call_output", "x"]),
            ("item", "role"): name,
            ("item", "id"): ODD_TEXT,
            ("item", "content"): st.lists(
                st.fixed_dictionaries(
                    {
                        "type": st.sampled_from(["input_text", "text", "input_audio"]),
                        "text": ODD_TEXT,
                    }
                ),
                max_size=2,
            ),
            ("previous_item_id",): ODD_TEXT,
        },
    )
    truncate = mutated(
        {
            "type": "conversation.item.truncate",
            "item_id": ITEM,
            "content_index": 0,
            "audio_end_ms": 200,
        },
        {
            ("item_id",): st.one_of(ODD_TEXT, st.just("item_nope")),
            ("content_index",): number,
            ("audio_end_ms",): number,
        },
    )
    response = mutated(
        {"type": "response.create", "response": {"instructions": "x", "metadata": {"k": "v"}}},
        {("response",): json_values(), ("response", "metadata"): json_values()},
    )
    cancel = mutated(
        {"type": "response.cancel", "response_id": "resp_x"}, {("response_id",): ODD_TEXT}
    )
    simple = st.sampled_from(
        [
            dumps({"type": "input_audio_buffer.commit"}),
            dumps({"type": "input_audio_buffer.clear"}),
            dumps({"type": "output_audio_buffer.clear"}),
        ]
    )
    unknown = name.map(lambda t: dumps({"type": t}))
    shaped = st.one_of(
        audio, audio, session, item, truncate, truncate, response, cancel, simple, unknown
    )
    return st.one_of(shaped, shaped, shaped, raw_frames(wire.MAX_CLIENT_EVENT_CHARS))


@st.composite
def streams(draw: st.DrawFn) -> list[str | bytes | None]:
    """Hostile frames mixed into a valid stream (None: an append of 20 ms of silence)."""
    frames: list[str | bytes | None] = draw(
        st.lists(st.one_of(realtime_frames(), st.none()), min_size=1, max_size=30)
    )
    return frames


ISSUE_11_FRAMES: list[str | bytes | None] = [
    None,
    dumps({"type": "conversation.item.truncate", "item_id": ITEM, "audio_end_ms": 10**400}),
    '{"type":"conversation.item.truncate","item_id":"' + ITEM + '","audio_end_ms":Infinity}',
    dumps({"type": "conversation.item.truncate", "item_id": ITEM, "audio_end_ms": 100}),
    dumps(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"text": "a\x00b"}]},
        }
    ),
    b"\x00\x01",
    None,
]


def typed(frame: str | bytes) -> wire.ClientEvent | None:
    """The frame as the codec reads it (the oracle); None if it is unusable."""
    if isinstance(frame, bytes):
        return None
    try:
        event = wire.parse_client_event(frame)
    except wire.RealtimeEventError:
        return None
    return None if isinstance(event, wire.UnknownEvent) else event


# -- one call ---------------------------------------------------------------------------------


@dataclass
class Outcome(Peer):
    session_id: str = ""
    sent: list[str | bytes] = field(default_factory=list)
    sent_everything: bool = False
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.received if e["type"] == type_]


def opened(server: LiveServer) -> Any:
    url = f"{server.ws_url}/v1/realtime?agent_id={server.agent_id}"
    headers = [(b"authorization", f"Bearer {server.api_key}".encode())]
    return trio_websocket.open_websocket_url(url, extra_headers=headers)


async def fuzz_call(server: LiveServer, stream: list[str | bytes | None]) -> Outcome:
    log_mark = server.log.mark()
    outcome = Outcome()
    async with opened(server) as ws, trio.open_nursery() as nursery:
        nursery.start_soon(outcome.listen, ws)
        await ws.send_message(SESSION_UPDATE)
        await outcome.until(lambda: outcome.of("response.output_item.added"))  # greeting
        outcome.session_id = _session_uuid(outcome.of("session.created")[0])
        item_id = outcome.of("response.output_item.added")[0]["item"]["id"]
        try:
            for frame in stream:
                text = append(SILENCE_20MS) if frame is None else frame
                if isinstance(text, str):
                    text = text.replace(ITEM, item_id)
                await ws.send_message(text)
                outcome.sent.append(text)
            await ws.send_message(CLEAR)
            clears = 1 + sum(isinstance(typed(f), wire.InputAudioBufferClear) for f in outcome.sent)
            await outcome.until(lambda: len(outcome.of("input_audio_buffer.cleared")) >= clears)
            outcome.sent_everything = outcome.close_code is None  # went on, and answered...
        except trio_websocket.ConnectionClosed as closed:  # seen here before the listener
            outcome.closed(closed)
        await ws.aclose()  # ... and the client hangs up
        nursery.cancel_scope.cancel()
    outcome.events = await server.ended(outcome.session_id, log_mark)
    return outcome


def _session_uuid(created: dict[str, Any]) -> str:
    return str(uuid.UUID(created["session"]["id"].removeprefix("sess_")))


def check(outcome: Outcome) -> None:
    events = outcome.events
    (end,) = [p for t, p in events if t == "session.end"]
    if outcome.close_code in (1008, 1009):
        assert outcome.close_reason, "a policy close says why"
        assert end["reason"] != "client closed the connection", end
        (disconnect,) = [p for t, p in events if t == "disconnect"]
        assert disconnect["reason"] and disconnect["detail"]
        return
    assert outcome.sent_everything, (outcome.close_code, outcome.close_reason)
    assert end["reason"] == "client closed the connection", end
    expected = sum(typed(f) is None for f in outcome.sent)
    logged = [p for t, p in events if t == "error" and p.get("where") == "realtime.client"]
    assert len(logged) == expected, (logged, outcome.sent)
    assert len(outcome.of("error")) >= expected
    for error in outcome.of("error"):
        assert error["error"]["type"] == "invalid_request_error" and error["error"]["message"]


class RealtimeWitness(Witness):
    async def talk(self) -> None:
        peer = Outcome()

        def transcripts() -> list[str]:
            return [e["transcript"] for e in peer.of("response.output_audio_transcript.done")]

        async with opened(self.server) as ws, trio.open_nursery() as nursery:
            nursery.start_soon(peer.listen, ws)
            await ws.send_message(SESSION_UPDATE)
            await peer.until(lambda: len(transcripts()) >= 1)  # the greeting
            self.greeted.set()
            await self.go.wait()
            pcm = synthesize_at("what are your opening hours", RATE).tobytes() + bytes(RATE * 3)
            step = RATE // 10 * 2  # 100 ms appends
            for i in range(0, len(pcm), step):
                await ws.send_message(append(pcm[i : i + step]))
            await peer.until(lambda: len(transcripts()) >= 2)
            self.answer = transcripts()[1] if len(transcripts()) >= 2 else None
            nursery.cancel_scope.cancel()


def test_any_frames_mid_call_leave_the_call_whole_and_other_calls_undisturbed(
    server: LiveServer,
) -> None:
    def one_call(stream: list[str | bytes | None]) -> None:
        check(server.run(fuzz_call, server, stream))

    fuzz_the_door(server, RealtimeWitness(server), streams(), ISSUE_11_FRAMES, one_call)


def test_a_client_sending_garbage_or_a_huge_event_is_cut_off_with_a_reason(
    server: LiveServer,
) -> None:
    garbage = server.run(fuzz_call, server, [b"\x00"] * 25)
    assert (garbage.close_code, garbage.close_reason) == (1008, "too many malformed frames")
    assert garbage.events[-1][1]["reason"] == "transport failed: too many malformed frames"
    huge = server.run(fuzz_call, server, [None, "x" * (wire.MAX_CLIENT_EVENT_CHARS + 1)])
    assert (huge.close_code, huge.close_reason) == (1009, "frame too large")
    assert huge.events[-1][1]["reason"] == "transport failed: frame too large"
    for outcome in (garbage, huge):  # the call's log row says it too
        logged = server.run(server.end_reason_logged, outcome.session_id)
        assert logged == outcome.events[-1][1]["reason"]
    assert server.log.problems == []
