"""End to end: the official ``openai`` package's Realtime client against ``/v1/realtime``.

The real server runs in-process on loopback (embedded PostgreSQL, the
``local`` provider: VAD, PocketSphinx, eSpeak NG); the client is
``AsyncOpenAI(...).realtime.connect(...)`` exactly as an application would use
it with OpenAI, only ``websocket_base_url`` points at the runtime. The SDK
runs on asyncio, so it runs in a worker thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
import pytest
import trio
import trio_websocket
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from test_e2e_twilio import Server, server  # noqa: F401  (the fixture)

from switchboard.actors.local.tts import synthesize_at
from switchboard.codecs import pcm16_to_bytes

SERVER_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeServerEvent)
RATE = 24000


@dataclass
class Heard:
    """What the client received, in order (the JSON of each server event)."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    def audio_by_response(self) -> dict[str, bytes]:
        audio: dict[str, bytes] = {}
        for e in self.of("response.output_audio.delta"):
            audio[e["response_id"]] = audio.get(e["response_id"], b"") + base64.b64decode(
                e["delta"]
            )
        return audio


async def _collect(
    conn: Any, heard: Heard, done: Callable[[Heard], bool], *, quiet_s: float, overall_s: float
) -> None:
    """Receive until ``done``, ``quiet_s`` without an event once audio came, or ``overall_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + overall_s
    while not done(heard) and loop.time() < deadline:
        wait = deadline - loop.time()
        if heard.of("response.output_audio.delta"):
            wait = min(wait, quiet_s)
        try:
            raw = await asyncio.wait_for(conn.recv_bytes(), wait)
        except TimeoutError:
            return
        SERVER_EVENTS.validate_json(raw)  # shaped as the SDK's own types say
        heard.events.append(json.loads(raw))


def _responses_done(heard: Heard, n: int) -> bool:
    return len(heard.of("response.done")) >= n


def talk(url: str, api_key: str, agent_id: str, speech: bytes) -> Heard:
    """The application: connect, configure, listen to the greeting, speak, listen."""

    async def main() -> Heard:
        heard = Heard()
        client = AsyncOpenAI(api_key=api_key, websocket_base_url=url + "/v1")
        async with client.realtime.connect(
            model="gpt-realtime", extra_query={"agent_id": agent_id}
        ) as conn:
            heard.events.append(json.loads(await conn.recv_bytes()))  # session.created
            await conn.session.update(
                session={
                    "type": "realtime",
                    "instructions": "Talk like a pirate.",
                    "audio": {
                        "input": {"format": {"type": "audio/pcm", "rate": RATE}},
                        "output": {"format": {"type": "audio/pcm", "rate": RATE}},
                    },
                }
            )
            # The greeting: until its response.done, or quiet once its audio came.
            await _collect(conn, heard, lambda h: _responses_done(h, 1), quiet_s=1.5, overall_s=20)
            # A malformed event (audio that is not base64): an error, and the call goes on.
            await conn.send(
                {"type": "input_audio_buffer.append", "audio": "%%%", "event_id": "bad1"}
            )
            for i in range(0, len(speech), RATE // 10 * 2):  # 100 ms appends
                chunk = speech[i : i + RATE // 10 * 2]
                await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            first_answer = len(heard.of("response.output_audio.delta"))

            def answered(h: Heard) -> bool:
                return _responses_done(h, 2)

            await _collect(conn, heard, answered, quiet_s=1e9, overall_s=10)
            if len(heard.of("response.output_audio.delta")) > first_answer:
                await _collect(conn, heard, answered, quiet_s=4, overall_s=60)
        return heard

    return asyncio.run(main())


async def test_the_openai_sdk_client_talks_to_the_agent_through_v1_realtime(
    server: Server,  # noqa: F811
) -> None:
    (agent_id,) = server.rows("select id from agents")[0]
    line = synthesize_at("what are your opening hours", RATE)
    speech = pcm16_to_bytes(line) + b"\x00\x00" * RATE  # and a second of silence
    heard = await trio.to_thread.run_sync(
        talk, server.url.replace("http://", "ws://"), server.creds.api_key, str(agent_id), speech
    )

    assert heard.events[0]["type"] == "session.created"
    (updated,) = heard.of("session.updated")
    assert updated["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": RATE}
    assert "pirate" not in updated["session"].get("instructions", "")  # the agent's win
    (error,) = heard.of("error")
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["event_id"] == "bad1" and "audio" in error["error"]["message"]
    audio = heard.audio_by_response()
    assert len(audio) == 2, heard.events  # the greeting, then the answer to the caller
    greeting_id, answer_id = list(audio)
    assert all(len(a) > RATE * 2 for a in audio.values())  # more than a second each
    (created,) = [e for e in heard.of("response.created") if e["response"]["id"] == answer_id]
    assert heard.events.index(created) < next(
        i
        for i, e in enumerate(heard.events)
        if e["type"] == "response.output_audio.delta" and e["response_id"] == answer_id
    )

    (transcribed,) = heard.of("conversation.item.input_audio_transcription.completed")
    assert transcribed["transcript"].strip()  # the open transcript (the intent decides)
    transcripts = {
        e["response_id"]: e["transcript"] for e in heard.of("response.output_audio_transcript.done")
    }
    assert "Bright Smile Dental" in transcripts[greeting_id]
    assert "Monday to Friday" in transcripts[answer_id]
    done = {e["response"]["id"]: e["response"] for e in heard.of("response.done")}
    assert done[answer_id]["status"] == "completed"
    assert heard.events.index(heard.of("response.done")[-1]) > max(
        i for i, e in enumerate(heard.events) if e["type"] == "response.output_audio.delta"
    )
    with trio.fail_after(10):  # the call winds down once the client has closed
        while not server.rows("select 1 from call_events where type = 'session.end'"):
            await trio.sleep(0.05)
    events = [r[0] for r in server.rows("select type from call_events order by seq")]
    assert "realtime.session.update" in events and "turn:user" in events


async def test_a_bad_credential_is_refused_with_401_before_accept_and_creates_nothing(
    server: Server,  # noqa: F811
) -> None:
    (agent_id,) = server.rows("select id from agents")[0]
    url = server.url.replace("http://", "ws://") + f"/v1/realtime?agent_id={agent_id}"
    for credential in ("sb_not-a-key", "eyJhbGciOiJub25lIn0.e30.", None):
        headers = (
            [] if credential is None else [(b"authorization", f"Bearer {credential}".encode())]
        )
        with pytest.raises(trio_websocket.ConnectionRejected) as refused:
            async with trio_websocket.open_websocket_url(url, extra_headers=headers):
                pass
        assert refused.value.status_code == 401, credential
        assert refused.value.body is not None and b"error" in refused.value.body
    wrong_agent = url.replace(str(agent_id), "00000000-0000-0000-0000-000000000000")
    with pytest.raises(trio_websocket.ConnectionRejected) as refused:
        async with trio_websocket.open_websocket_url(
            wrong_agent,
            extra_headers=[(b"authorization", f"Bearer {server.creds.api_key}".encode())],
        ):
            pass
    assert refused.value.status_code == 403
    assert server.rows("select count(*) from voice_sessions") == [(0,)]
