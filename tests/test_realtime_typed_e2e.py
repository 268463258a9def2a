"""End to end: typed text and ``response.cancel`` from the official ``openai`` client
through ``/v1/realtime`` (issue 14 point 7).

The real server runs in-process on loopback (embedded PostgreSQL, the ``local``
provider); the client is ``AsyncOpenAI(...).realtime.connect(...)`` as an
application would use it with OpenAI (on asyncio, in a worker thread). It types
a question (``conversation.item.create`` with ``input_text``, then
``response.create``) and gets the answer as a transcript and audio; it types
another and cancels the answer as soon as it is created, and the agent stops.
Every event the client receives is checked against the SDK's own types.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import trio
from openai import AsyncOpenAI
from test_e2e_twilio import Server, server  # noqa: F401  (the fixture)
from test_realtime_endpoint_e2e import RATE, SERVER_EVENTS, Heard

HOURS = "What are your opening hours?"
BOOKING = "I would like to book an appointment."


async def _until(conn: Any, heard: Heard, done: Any, overall_s: float = 30) -> None:
    """Receive (and check) server events until ``done(heard)`` or ``overall_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + overall_s
    while not done(heard):
        raw = await asyncio.wait_for(conn.recv_bytes(), max(0.01, deadline - loop.time()))
        SERVER_EVENTS.validate_json(raw)
        heard.events.append(json.loads(raw))


def _user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def type_and_cancel(url: str, api_key: str, agent_id: str) -> tuple[Heard, str, str]:
    """The application; returns what it heard, the answer's id and the cancelled one's."""

    async def main() -> tuple[Heard, str, str]:
        heard = Heard()
        client = AsyncOpenAI(api_key=api_key, websocket_base_url=url + "/v1")
        async with client.realtime.connect(
            model="gpt-realtime", extra_query={"agent_id": agent_id}
        ) as conn:
            fmt = {"type": "audio/pcm", "rate": RATE}
            await conn.session.update(
                session={"type": "realtime", "audio": {"input": {"format": fmt}}}
            )
            await _until(conn, heard, lambda h: len(h.of("response.done")) >= 1)  # greeting
            # A typed question, and the request for its answer.
            await conn.conversation.item.create(item=_user_text(HOURS))
            await conn.response.create()
            await _until(conn, heard, lambda h: len(h.of("response.done")) >= 2)
            answer_id = heard.of("response.done")[-1]["response"]["id"]
            # Another, cancelled as soon as its response is created.
            await conn.conversation.item.create(item=_user_text(BOOKING))
            await conn.response.create()
            await _until(conn, heard, lambda h: len(h.of("response.created")) >= 3)
            cancelled_id = heard.of("response.created")[-1]["response"]["id"]
            await conn.response.cancel()
            await _until(
                conn,
                heard,
                lambda h: len(h.of("response.done")) >= 3 or bool(h.of("error")),
            )
            await asyncio.sleep(1.0)  # anything of the cancelled answer would come now
            while True:
                try:
                    raw = await asyncio.wait_for(conn.recv_bytes(), 0.2)
                except TimeoutError:
                    break
                heard.events.append(json.loads(raw))
        return heard, answer_id, cancelled_id

    return asyncio.run(main())


async def test_the_openai_client_types_to_the_agent_and_cancels_its_answer(
    server: Server,  # noqa: F811
) -> None:
    (agent_id,) = server.rows("select id from agents")[0]
    url = server.url.replace("http://", "ws://")
    heard, answer_id, cancelled_id = await trio.to_thread.run_sync(
        type_and_cancel, url, server.creds.api_key, str(agent_id)
    )

    # The typed question: the client's item is created, nothing is "transcribed", and
    # the answer comes as a transcript and as audio.
    created = [e["item"] for e in heard.of("conversation.item.created")]
    typed = [i for i in created if i["role"] == "user"]
    assert [i["content"][0]["text"] for i in typed] == [HOURS, BOOKING]
    assert not heard.of("conversation.item.input_audio_transcription.completed")
    transcripts = {
        e["response_id"]: e["transcript"] for e in heard.of("response.output_audio_transcript.done")
    }
    assert "Monday to Friday" in transcripts[answer_id], transcripts
    audio = heard.audio_by_response()
    assert len(audio[answer_id]) > RATE * 2 * 2  # more than two seconds of speech
    done = {e["response"]["id"]: e["response"] for e in heard.of("response.done")}
    assert done[answer_id]["status"] == "completed"

    # The cancel: no error, the response ends as OpenAI ends a cancelled one, and
    # nothing of it is heard.
    assert not heard.of("error"), heard.of("error")
    assert done[cancelled_id]["status"] == "cancelled"
    assert done[cancelled_id]["status_details"]["reason"] == "client_cancelled"
    assert cancelled_id not in audio
    assert not transcripts.get(cancelled_id)

    # The agent itself stopped: the call logged the cancel and the barge-in, and the
    # provider's answer ended interrupted, with nothing of it said.
    with trio.fail_after(10):
        while not server.rows("select 1 from call_events where type = 'session.end'"):
            await trio.sleep(0.05)
    rows = server.rows("select type, payload from call_events order by seq")
    kinds = [t for t, _ in rows]
    typed_turns = [p["text"] for t, p in rows if t == "turn:user" and p.get("typed")]
    assert typed_turns == [HOURS, BOOKING]
    (cancel,) = [p for t, p in rows if t == "response.cancel"]
    assert cancel["response_ids"] == [cancelled_id]
    assert "barge_in" in kinds
    ends = {p["response_id"]: p for t, p in rows if t == "response.done"}
    assert ends[cancelled_id]["interrupted"] is True
    said = [p["text"] for t, p in rows if t == "turn:agent"]
    assert not any("book an appointment" in s for s in said), said
