"""The ``/v1/realtime`` transport on Trio's MockClock, with a real WebSocket in memory.

The test plays both neighbours of the transport: the OpenAI Realtime client
(over real trio-websocket framing, events written and read with the shared
codec) and the supervisor (its channels). Every event the client receives is
also validated against the official ``openai`` package's server event types,
so "shaped as OpenAI's" is checked by OpenAI's own schema.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import pydantic
import pytest
import trio
import trio_websocket
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent

from switchboard.actors.context import AudioFormat, CallContext, EventSink
from switchboard.actors.messages import (
    AudioChunk,
    CallerAudio,
    CallerHungUp,
    CallEvent,
    ClearPlayback,
    EndCall,
    MarkPlayback,
    PlayAudio,
    PlaybackCleared,
    PlaybackMarked,
    ShowEvent,
    ToSupervisor,
    ToTransport,
    TransportFailed,
)
from switchboard.actors.realtime_session import call_format
from switchboard.actors.realtime_transport import MAX_BAD_EVENTS_IN_A_ROW, RealtimeTransport
from switchboard.codecs import openai_realtime as wire
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.testing import memory_connector

AGENT = parse_agent_yaml(
    "name: t\ntenant: t\ngreeting: hi\ninstructions: Be brief.\nintents:\n"
    "  - name: hours\n    phrases: [hours]\n    reply: We open at nine.\n"
)
PCM16_24K = AudioFormat("pcm16", 24000)
GA_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RealtimeServerEvent)
BETA_EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(BetaServerEvent)


class ServerSocket:
    """The transport's MessageSocket on the server end of a trio-websocket connection."""

    def __init__(self, conn: trio_websocket.WebSocketConnection) -> None:
        self.conn = conn

    async def receive(self) -> str | bytes | None:
        try:
            return await self.conn.get_message()
        except trio_websocket.ConnectionClosed:
            return None

    async def send(self, message: str) -> None:
        try:
            await self.conn.send_message(message)
        except trio_websocket.ConnectionClosed:
            pass

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with trio.move_on_after(1):  # a client that is gone never answers the close
            await self.conn.aclose(code, reason)


@dataclass
class Call:
    """The client's socket and the supervisor's ends of the transport's channels."""

    client: trio_websocket.WebSocketConnection
    commands: trio.MemorySendChannel[ToTransport]
    told: trio.MemoryReceiveChannel[ToSupervisor]
    dialect: wire.Dialect
    logged: list[CallEvent] = field(default_factory=list)

    async def send(self, event: wire.ClientEvent | str) -> None:
        text = event if isinstance(event, str) else wire.encode_client_event(event)
        await self.client.send_message(text)

    async def recv(self) -> wire.ServerEvent:
        text = await self.client.get_message()
        assert isinstance(text, str)
        (BETA_EVENTS if self.dialect == "beta" else GA_EVENTS).validate_json(text)
        return wire.parse_server_event(text)

    async def recv_raw(self) -> dict[str, Any]:
        text = await self.client.get_message()
        assert isinstance(text, str)
        (BETA_EVENTS if self.dialect == "beta" else GA_EVENTS).validate_json(text)
        data: dict[str, Any] = json.loads(text)
        return data

    async def show(self, type_: str, **payload: Any) -> None:
        await self.commands.send(ShowEvent(CallEvent(type_, 0.0, payload)))


@asynccontextmanager
async def realtime_call(
    *, fmt: AudioFormat = PCM16_24K, dialect: wire.Dialect = "ga", pending: Sequence[str] = ()
) -> AsyncIterator[Call]:
    commands, inbox = trio.open_memory_channel[ToTransport](64)
    to_supervisor, told = trio.open_memory_channel[ToSupervisor](256)
    events_send, events_receive = trio.open_memory_channel[CallEvent](1024)
    ctx = CallContext(
        session_id=uuid4(),
        tenant_id=uuid4(),
        agent_id=uuid4(),
        agent=AGENT,
        t0=trio.current_time(),
        caller_format=fmt,
    )
    logged: list[CallEvent] = []
    transport_ended = trio.Event()

    async def keep_log() -> None:
        async for event in events_receive:
            logged.append(event)

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        conn = await request.accept()
        transport = RealtimeTransport(
            ctx,
            socket=ServerSocket(conn),
            inbox=inbox,
            to_supervisor=to_supervisor,
            events=EventSink(ctx, events_send),
            dialect=dialect,
            model="gpt-realtime",
            pending=pending,
        )
        await transport.run()
        transport_ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_log)
        async with memory_connector(handler)("ws://runtime/v1/realtime", []) as client:
            yield Call(client, commands, told, dialect, logged)
            await commands.aclose()  # the supervisor is done: the transport winds down
            await transport_ended.wait()
        nursery.cancel_scope.cancel()


def pcm16(ms: int, value: int = 1000) -> bytes:
    return value.to_bytes(2, "little", signed=True) * (24 * ms)


async def test_appended_audio_reaches_the_call_as_20_ms_frames_on_the_caller_timeline() -> None:
    async with realtime_call() as call:
        await call.send(wire.InputAudioBufferAppend(audio=pcm16(50)))
        await call.send(wire.InputAudioBufferAppend(audio=pcm16(30)))
        frames = [await call.told.receive() for _ in range(5)]
    assert all(isinstance(f, CallerAudio) for f in frames)
    audio = [f for f in frames if isinstance(f, CallerAudio)]
    assert [f.offset_ms for f in audio] == [0.0, 20.0, 40.0, 50.0, 70.0]
    assert [f.chunk.duration_ms for f in audio] == [20.0, 20.0, 10.0, 20.0, 10.0]
    assert {(f.chunk.encoding, f.chunk.sample_rate) for f in audio} == {("pcm16", 24000)}
    assert b"".join(f.chunk.data for f in audio) == pcm16(80)


async def test_mu_law_session_passes_caller_bytes_through_untouched() -> None:
    ulaw = bytes(range(256)) * 2  # 64 ms at 8 kHz
    async with realtime_call(fmt=AudioFormat("pcmu", 8000)) as call:
        await call.send(wire.InputAudioBufferAppend(audio=ulaw))
        frames = [await call.told.receive() for _ in range(4)]
    audio = [f for f in frames if isinstance(f, CallerAudio)]
    assert b"".join(f.chunk.data for f in audio) == ulaw
    assert [len(f.chunk.data) for f in audio] == [160, 160, 160, 32]


async def test_a_turn_shows_as_openai_events_in_order_with_the_audio() -> None:
    speech = pcm16(40, value=-1234)
    async with realtime_call() as call:
        await call.show("speech.started", audio_offset_ms=120.0)
        await call.show("speech.stopped", audio_offset_ms=1400.0)
        await call.show(
            "turn:user", text="what are your hours", audio_start_ms=120.0, audio_end_ms=1400.0
        )
        await call.show("response.start", response_id="r1", greeting=False)
        await call.commands.send(PlayAudio(AudioChunk(speech, "pcm16", 24000), "r1"))
        await call.show("turn:agent", text="We open at nine.", response_id="r1", interrupted=False)
        await call.show("response.done", response_id="r1", interrupted=False, greeting=False)
        seen = [await call.recv() for _ in range(14)]

    started, stopped, committed, user_item, transcribed = seen[:5]
    assert isinstance(started, wire.InputAudioBufferSpeechStarted)
    assert started.audio_start_ms == 120
    assert isinstance(stopped, wire.InputAudioBufferSpeechStopped)
    assert stopped.audio_end_ms == 1400 and stopped.item_id == started.item_id
    assert isinstance(committed, wire.InputAudioBufferCommitted)
    assert committed.item_id == started.item_id
    assert isinstance(user_item, wire.ConversationItemCreated)
    assert isinstance(user_item.item, wire.MessageItem) and user_item.item.role == "user"
    assert user_item.item.content[0].transcript == "what are your hours"
    assert isinstance(transcribed, wire.InputAudioTranscriptionCompleted)
    assert transcribed.transcript == "what are your hours"

    created, added, agent_item, delta, t_delta, t_done, a_done, item_done, done = seen[5:]
    assert isinstance(created, wire.ResponseCreated) and created.response.id == "r1"
    assert created.response.status == "in_progress"
    assert isinstance(added, wire.ResponseOutputItemAdded)
    assert isinstance(agent_item, wire.ConversationItemCreated)
    assert agent_item.previous_item_id == started.item_id
    assert isinstance(delta, wire.ResponseOutputAudioDelta) and delta.delta == speech
    assert delta.item_id == added.item.id
    assert isinstance(t_delta, wire.ResponseOutputAudioTranscriptDelta)
    assert isinstance(t_done, wire.ResponseOutputAudioTranscriptDone)
    assert t_done.transcript == "We open at nine."
    assert isinstance(a_done, wire.ResponseOutputAudioDone)
    assert isinstance(item_done, wire.ResponseOutputItemDone)
    assert isinstance(done, wire.ResponseDone)
    assert (done.response.id, done.response.status) == ("r1", "completed")


async def test_response_done_reports_completed_with_the_transcript() -> None:
    async with realtime_call() as call:
        await call.show("response.start", response_id="r1", greeting=True)
        await call.show("turn:agent", text="hi", response_id="r1", interrupted=False)
        await call.show("response.done", response_id="r1", interrupted=False, greeting=True)
        seen = [await call.recv() for _ in range(8)]
    done = seen[-1]
    assert isinstance(done, wire.ResponseDone)
    assert done.response.status == "completed"
    (item,) = done.response.output
    assert isinstance(item, wire.MessageItem) and item.content[0].transcript == "hi"


async def test_beta_clients_get_the_beta_event_names() -> None:
    async with realtime_call(dialect="beta") as call:
        await call.show("response.start", response_id="r1", greeting=False)
        await call.commands.send(PlayAudio(AudioChunk(pcm16(20), "pcm16", 24000), "r1"))
        await call.show("turn:agent", text="ok", response_id="r1", interrupted=False)
        names = [(await call.recv_raw())["type"] for _ in range(6)]
    assert names[3:] == [
        "response.audio.delta",
        "response.audio_transcript.delta",
        "response.audio_transcript.done",
    ]


async def test_a_mark_is_confirmed_at_once_after_the_audio_before_it_was_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with realtime_call() as call:
        start = trio.current_time()
        await call.commands.send(PlayAudio(AudioChunk(pcm16(1000), "pcm16", 24000), "r1"))
        await call.commands.send(MarkPlayback("response:r1"))
        assert await call.told.receive() == PlaybackMarked("response:r1")
        assert trio.current_time() == start  # not after the second of audio has played
        types = [(await call.recv()).__class__ for _ in range(4)]
    assert types[-1] is wire.ResponseOutputAudioDelta


async def test_barge_in_reports_the_real_time_played_when_the_client_says_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with realtime_call() as call:
        await call.commands.send(PlayAudio(AudioChunk(pcm16(2000), "pcm16", 24000), "r1"))
        for _ in range(4):
            await call.recv()
        await trio.sleep(0.3)
        await call.commands.send(ClearPlayback())
        cleared = await call.told.receive()
    assert cleared == PlaybackCleared("r1", 300.0, 2000.0)


async def test_barge_in_reports_what_the_client_said_it_played() -> None:
    async with realtime_call() as call:
        await call.show("response.start", response_id="r1", greeting=False)
        await call.commands.send(PlayAudio(AudioChunk(pcm16(2000), "pcm16", 24000), "r1"))
        seen = [await call.recv() for _ in range(4)]
        added = seen[1]
        assert isinstance(added, wire.ResponseOutputItemAdded) and added.item.id
        await call.send(
            wire.ConversationItemTruncate(item_id=added.item.id, content_index=0, audio_end_ms=740)
        )
        truncated = await call.recv()
        await call.commands.send(ClearPlayback())
        cleared = await call.told.receive()
    assert isinstance(truncated, wire.ConversationItemTruncated)
    assert truncated.audio_end_ms == 740
    assert cleared == PlaybackCleared("r1", 740.0, 2000.0)


async def test_response_cancel_ends_the_response_for_the_client_and_drops_its_audio() -> None:
    async with realtime_call() as call:
        await call.show("response.start", response_id="r1", greeting=False)
        for _ in range(3):
            await call.recv()
        await call.send(wire.ResponseCancel(event_id="c1"))
        seen = [await call.recv() for _ in range(4)]
        await call.commands.send(PlayAudio(AudioChunk(pcm16(20), "pcm16", 24000), "r1"))
        await call.show("response.done", response_id="r1", interrupted=True, greeting=False)
        await call.send(wire.ResponseCancel(event_id="c2"))  # nothing left to cancel
        error = await call.recv()
    done = seen[-1]
    assert isinstance(done, wire.ResponseDone)
    assert (done.response.status, done.response.status_reason) == ("cancelled", "client_cancelled")
    assert isinstance(error, wire.ErrorEvent)  # no audio delta or second done came before it
    assert error.code == "response_cancel_not_active" and error.client_event_id == "c2"
    assert any(e.type == "realtime.response.cancel" for e in call.logged)


async def test_a_malformed_event_gets_an_openai_error_and_the_call_goes_on() -> None:
    async with realtime_call() as call:
        await call.send('{"type": "input_audio_buffer.append", "event_id": "e7", "audio": "%%%"}')
        bad_b64 = await call.recv()
        await call.send("{not json")
        bad_json = await call.recv()
        await call.send('{"type": "session.dance", "event_id": "e8"}')
        unknown = await call.recv()
        await call.send(wire.InputAudioBufferAppend(audio=pcm16(20)))
        frame = await call.told.receive()
    assert isinstance(bad_b64, wire.ErrorEvent)
    assert bad_b64.error_type == "invalid_request_error"
    assert bad_b64.code == "invalid_value" and bad_b64.client_event_id == "e7"
    assert "audio" in bad_b64.message
    assert isinstance(bad_json, wire.ErrorEvent) and bad_json.code == "invalid_json"
    assert isinstance(unknown, wire.ErrorEvent)
    assert (unknown.code, unknown.param, unknown.client_event_id) == ("invalid_value", "type", "e8")
    assert isinstance(frame, CallerAudio) and frame.offset_ms == 0.0


async def test_a_client_sending_only_garbage_is_disconnected_as_a_failed_transport() -> None:
    async with realtime_call() as call:
        for _ in range(MAX_BAD_EVENTS_IN_A_ROW):
            await call.send("[]")
        failed = await call.told.receive()
        with pytest.raises(trio_websocket.ConnectionClosed):
            while True:
                await call.client.get_message()
    assert isinstance(failed, TransportFailed)
    assert call.client.closed is not None and call.client.closed.code == 1008


async def test_session_update_echoes_the_agent_and_keeps_the_call_format() -> None:
    async with realtime_call(fmt=AudioFormat("pcmu", 8000)) as call:
        update = wire.SessionUpdate(
            session=wire.SessionConfig(
                instructions="Talk like a pirate.", input_format=wire.PCM16_24K
            ),
            event_id="u1",
        )
        await call.send(update)
        error, updated = await call.recv(), await call.recv()
    assert isinstance(error, wire.ErrorEvent) and error.client_event_id == "u1"
    assert "audio/pcmu" in error.message
    assert isinstance(updated, wire.SessionUpdated)
    assert updated.session.instructions == "Be brief."
    assert updated.session.input_format == updated.session.output_format == wire.PCMU_8K


async def test_text_items_are_acknowledged_and_commit_without_speech_is_refused() -> None:
    async with realtime_call() as call:
        await call.send(
            wire.ConversationItemCreate(
                item=wire.MessageItem(
                    role="user", content=(wire.ContentPart(type="input_text", text="hello"),)
                )
            )
        )
        created = await call.recv()
        await call.send(wire.InputAudioBufferCommit(event_id="k1"))
        refused = await call.recv()
        await call.show("speech.started", audio_offset_ms=10.0)
        started = await call.recv()
        await call.send(wire.InputAudioBufferCommit())
        committed = await call.recv()
        await call.send(wire.InputAudioBufferClear())
        cleared = await call.recv()
    assert isinstance(created, wire.ConversationItemCreated)
    assert isinstance(created.item, wire.MessageItem) and created.item.id
    assert created.item.content[0].text == "hello"
    assert isinstance(refused, wire.ErrorEvent)
    assert refused.code == "input_audio_buffer_commit_empty"
    assert isinstance(started, wire.InputAudioBufferSpeechStarted)
    assert isinstance(committed, wire.InputAudioBufferCommitted)
    assert committed.item_id == started.item_id
    assert isinstance(cleared, wire.InputAudioBufferCleared)
    assert any(
        e.type == "realtime.item.create" and e.payload["text"] == "hello" for e in call.logged
    )


async def test_end_call_closes_once_the_sent_audio_has_played(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with realtime_call() as call:
        start = trio.current_time()
        await call.commands.send(PlayAudio(AudioChunk(pcm16(1500), "pcm16", 24000), "r1"))
        await call.commands.send(EndCall("agent hung up"))
        with pytest.raises(trio_websocket.ConnectionClosed):
            while True:
                await call.client.get_message()
        closed_after = trio.current_time() - start
        hung_up = await call.told.receive()
    assert closed_after == pytest.approx(1.5, abs=0.01)
    assert isinstance(hung_up, CallerHungUp)
    assert call.client.closed is not None and call.client.closed.code == 1000


async def test_the_first_session_update_fixes_the_call_format() -> None:
    mulaw = wire.encode_client_event(
        wire.SessionUpdate(session=wire.SessionConfig(input_format=wire.PCMU_8K))
    )
    beta = json.dumps({"type": "session.update", "session": {"input_audio_format": "g711_ulaw"}})
    append = wire.encode_client_event(wire.InputAudioBufferAppend(audio=b"\x00\x00"))
    assert call_format(mulaw) == wire.PCMU_8K
    assert call_format(beta) == wire.PCMU_8K
    assert call_format(append) == wire.PCM16_24K
    assert call_format(None) == wire.PCM16_24K
    assert call_format("{broken") == wire.PCM16_24K


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=2400), max_size=8))
async def test_any_chunking_of_appends_gives_the_same_caller_audio(cuts: list[int]) -> None:
    audio = bytes(i % 251 for i in range(2400))  # 50 ms of PCM16 24 kHz
    bounds = sorted({0, len(audio), *cuts})
    appends = [audio[a:b] for a, b in itertools.pairwise(bounds)]
    async with realtime_call() as call:
        for part in appends:
            await call.send(wire.InputAudioBufferAppend(audio=part))
        frames: list[CallerAudio] = []
        while sum(len(f.chunk.data) for f in frames) < len(audio):
            frame = await call.told.receive()
            assert isinstance(frame, CallerAudio)
            frames.append(frame)
    assert b"".join(f.chunk.data for f in frames) == audio
    assert all(f.chunk.duration_ms <= 20 for f in frames)
    ends = [f.offset_ms + f.chunk.duration_ms for f in frames]
    assert [f.offset_ms for f in frames] == pytest.approx([0.0, *ends[:-1]], abs=1e-3)
