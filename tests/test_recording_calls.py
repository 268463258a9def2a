"""Recorded calls end to end, one per door: what the caller sent and heard is what the file holds.

A real server on loopback with the embedded PostgreSQL and the example
receptionist (which records, ``announce: auto``): after each call the
recording is read back with the format's reader and the server's keyring,
and compared with what the caller's side actually sent and received, byte
for byte. The file on disk holds no plaintext audio, a flipped byte fails
decryption, a California caller hears the consent line before the greeting
and a Texan does not, and an agent that does not record leaves nothing.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import trio
import trio_websocket
from browser_support import Harness, messages, of, start_harness
from test_e2e_twilio import DEMO, Server, server  # noqa: F401  (the fixture)

from switchboard.actors.local.tts import synthesize_at, synthesize_ulaw
from switchboard.codecs.recording_format import Kind, Record, RecordingCorrupt, read_records
from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.caller import CallerLine, Phone, place_call
from switchboard.orchestrator.recording_keys import Keyring
from switchboard.orchestrator.recording_policy import RecordingPolicy
from switchboard.orchestrator.recording_rows import get_recording
from switchboard.orchestrator.recording_store import LocalRecordingStore, object_key
from switchboard.orchestrator.server import example_agent_path
from switchboard.orchestrator.store import Store

CONSENT = "This call is recorded."
FRAME_MS = 20.0


def tracks(records: list[Record]) -> tuple[list[Record], list[Record]]:
    caller = [r for r in records if r.kind == Kind.CALLER_AUDIO]
    agent = [r for r in records if r.kind == Kind.AGENT_AUDIO]
    return caller, agent


def assert_increasing(records: list[Record]) -> None:
    times = [r.t_ms for r in records]
    assert times == sorted(times), "chunk times go back"


def assert_no_plaintext(blob: bytes, audio: bytes) -> None:
    """No 32-byte run of the call's audio (not silence) appears in the file."""
    runs = [audio[i : i + 32] for i in range(0, len(audio) - 32, 32)]
    speech = [r for r in runs if len(set(r)) > 8]
    assert len(speech) > 20, "the call had speech to look for"
    assert not any(r in blob for r in speech), "plaintext audio in the recording file"


def assert_flip_detected(blob: bytes, data_key: bytes) -> None:
    for where in (len(blob) // 3, len(blob) // 2, len(blob) - 5):
        altered = bytearray(blob)
        altered[where] ^= 0x01
        with pytest.raises(RecordingCorrupt):
            read_records(bytes(altered), data_key)


async def recording_of(
    store: Store, data_dir: Path, tenant_id: UUID, session_id: UUID
) -> tuple[Any, bytes, bytes]:
    """The session's finished recording: its row, the stored file, the data key."""
    with trio.fail_after(30):
        while True:
            row = await trio.to_thread.run_sync(get_recording, store, tenant_id, session_id)
            if row is not None and row.status == "complete":
                break
            await trio.sleep(0.05)
    blob = LocalRecordingStore(data_dir / "recordings").get(object_key(tenant_id, session_id))
    keyring = Keyring.load_or_create(data_dir)
    return row, blob, keyring.unwrap(row.kid, row.wrapped_key)


def assert_on_the_call_clock(
    caller: list[Record],
    agent: list[Record],
    sent: list[tuple[float, bytes]],
    received: list[tuple[float, bytes]],
) -> None:
    """Each chunk's time is on the call's clock: ``t0 = client time - t_ms`` is at most
    the call's start for what the caller sent (it reached the server later) and at least
    it for what the caller received (it left the server earlier). So every caller offset
    is <= every agent offset, on any machine; a wrong clock (seconds, another origin,
    a constant) breaks it. The gap, the network's, stays within a frame at the median."""
    before = [s - r.t_ms / 1000 for (s, _), r in zip(sent, caller, strict=True)]
    after = [s - r.t_ms / 1000 for (s, _), r in zip(received, agent, strict=True)]
    assert max(before) <= min(after) + 1e-6
    median_before = sorted(before)[len(before) // 2]
    median_after = sorted(after)[len(after) // 2]
    assert median_after - median_before >= 0


# -- Twilio ------------------------------------------------------------------


async def phone_call(srv: Server, state: str | None, *lines: CallerLine) -> tuple[Any, Phone]:
    phones: list[Phone] = []
    summary = await place_call(
        srv.url,
        list(lines),
        to_number=DEMO,
        from_state=state,
        auth_token="test-auth-token",
        api_key=srv.creds.api_key,
        realtime=False,
        phones=phones,
    )
    return summary, phones[0]


def events(srv: Server, session_id: UUID) -> list[tuple[str, float, dict[str, Any]]]:
    return [
        (t, float(ms), p)
        for t, ms, p in srv.rows(
            "select type, t_ms, payload from call_events where session_id = %s order by seq",
            session_id,
        )
    ]


async def test_a_phone_call_is_recorded_exactly_as_sent_and_heard(
    server: Server,  # noqa: F811
    store: Store,
    tmp_path: Path,
) -> None:
    summary, phone = await phone_call(
        server,
        "CA",
        CallerLine.say("what are your opening hours"),
        CallerLine.say("thank you goodbye"),
    )
    session_id = UUID(summary.session_id)
    tenant_id = server.rows("select tenant_id from voice_sessions where id = %s", session_id)[0][0]
    _, blob, key = await recording_of(store, tmp_path, tenant_id, session_id)
    header, records = read_records(blob, key)
    assert header.session_id == str(session_id) and header.caller.encoding == "pcmu"
    caller, agent = tracks(records)
    assert [r.data for r in caller] == [frame for _, frame in phone.sent]
    assert [r.data for r in agent] == [frame for _, frame in phone.received]
    assert_increasing(caller)
    assert_increasing(agent)
    assert_on_the_call_clock(caller, agent, phone.sent, phone.received)
    assert_no_plaintext(blob, b"".join(f for _, f in phone.received))
    assert_no_plaintext(blob, b"".join(f for _, f in phone.sent))
    assert_flip_detected(blob, key)
    assert list((tmp_path / "recordings" / "staging").glob("*")) == []  # staging file removed


async def test_a_california_caller_hears_the_consent_line_before_the_greeting_a_texan_does_not(
    server: Server,  # noqa: F811
) -> None:
    heard: dict[str, tuple[str, float, dict[str, Any]]] = {}
    for state in ("CA", "TX"):
        summary, phone = await phone_call(server, state, CallerLine.say("thank you goodbye"))
        log = events(server, UUID(summary.session_id))
        greeting = next(p["text"] for t, _, p in log if t == "turn:agent")
        (consent,) = [(ms, p) for t, ms, p in log if t == "recording.consent"]
        heard[state] = (greeting, len(b"".join(f for _, f in phone.received)), consent[1])
        if state == "CA":
            done = next(ms for t, ms, p in log if t == "response.done" and p["greeting"])
            assert consent[0] >= done  # heard once its closing mark came back
    ca_greeting, ca_audio, ca_event = heard["CA"]
    tx_greeting, tx_audio, tx_event = heard["TX"]
    assert ca_greeting.startswith(CONSENT) and "Bright Smile Dental" in ca_greeting
    assert CONSENT not in tx_greeting and "Bright Smile Dental" in tx_greeting
    assert ca_audio - tx_audio > 8000 * 0.8  # the line itself: most of a second of speech
    assert ca_event["announced"] is True and ca_event["state"] == "CA"
    assert ca_event["rule"] == "auto:all-party" and ca_event["line"] == CONSENT
    assert ca_event["heard"] is True and ca_event["heard_at_ms"] > 0
    assert tx_event["announced"] is False and tx_event["state"] == "TX"
    assert tx_event["rule"] == "auto:one-party" and tx_event["line"] is None


async def test_an_agent_that_does_not_record_keeps_no_audio(
    server: Server,  # noqa: F811
    store: Store,
    tmp_path: Path,
) -> None:
    agent = load_agent_file(example_agent_path())
    quiet = replace(agent, recording=RecordingPolicy(enabled=False))
    await trio.to_thread.run_sync(store.apply_agent, quiet)
    summary, _ = await phone_call(server, "CA", CallerLine.say("thank you goodbye"))
    session_id = UUID(summary.session_id)
    with trio.fail_after(30):
        while server.rows("select 1 from call_logs where session_id = %s", session_id) == []:
            await trio.sleep(0.05)
    log = events(server, session_id)
    assert [t for t, _, _ in log if t.startswith("recording.")] == []
    greeting = next(p["text"] for t, _, p in log if t == "turn:agent")
    assert CONSENT not in greeting
    assert server.rows("select count(*) from recordings") == [(0,)]
    folder = tmp_path / "recordings"
    assert not folder.exists() or [p for p in folder.rglob("*") if p.is_file()] == []


# -- /v1/realtime ------------------------------------------------------------


async def test_a_realtime_call_is_recorded_exactly_as_appended_and_received(
    server: Server,  # noqa: F811
    store: Store,
    tmp_path: Path,
) -> None:
    (agent_id,) = server.rows("select id from agents")[0]
    url = server.url.replace("http://", "ws://") + f"/v1/realtime?agent_id={agent_id}"
    speech = synthesize_ulaw("thank you goodbye") + b"\xff" * 8000 * 2
    appended: list[bytes] = []
    deltas: list[bytes] = []
    headers = [(b"authorization", f"Bearer {server.creds.api_key}".encode())]
    async with trio_websocket.open_websocket_url(url, extra_headers=headers) as ws:
        update = {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"format": {"type": "audio/pcmu"}},
                    "output": {"format": {"type": "audio/pcmu"}},
                },
            },
        }
        await ws.send_message(json.dumps(update))
        with trio.fail_after(60):
            greeted = False
            sent = False
            while True:
                try:
                    event = json.loads(await ws.get_message())
                except trio_websocket.ConnectionClosed:
                    break
                if event["type"] == "response.output_audio.delta":
                    deltas.append(base64.b64decode(event["delta"]))
                elif event["type"] == "response.done":
                    greeted = True
                if greeted and not sent:
                    sent = True
                    for i in range(0, len(speech), 800):
                        chunk = speech[i : i + 800]
                        appended.append(chunk)
                        message = {
                            "type": "input_audio_buffer.append",
                            "audio": base64.b64encode(chunk).decode(),
                        }
                        await ws.send_message(json.dumps(message))
    (row,) = server.rows("select id, tenant_id from voice_sessions where transport = 'realtime'")
    session_id, tenant_id = row
    _, blob, key = await recording_of(store, tmp_path, tenant_id, session_id)
    _, records = read_records(blob, key)
    caller, agent = tracks(records)
    assert b"".join(r.data for r in caller) == b"".join(appended)
    assert all(len(r.data) == 160 for r in caller[:-1])  # cut in 20 ms frames
    assert b"".join(r.data for r in agent) == b"".join(deltas)
    assert_increasing(caller)
    assert_increasing(agent)
    assert_no_plaintext(blob, b"".join(deltas))
    assert_flip_detected(blob, key)


# -- browser -----------------------------------------------------------------


@pytest.fixture
async def h(
    store: Store,
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> Harness:
    return await start_harness(nursery, store, database_url, tmp_path, monkeypatch, recordings=True)


async def test_a_browser_call_is_recorded_exactly_as_sent_and_heard(
    h: Harness, store: Store, tmp_path: Path
) -> None:
    rate = 16000
    session = await h.new_session(test_mode=True)
    url = f"{h.ws_url}/v1/voice?sample_rate={rate}"
    sent: list[bytes] = []
    async with trio_websocket.open_websocket_url(
        url, subprotocols=["switchboard.v1", session["token"]]
    ) as ws:
        seen = await messages(
            ws, lambda m: of(m, "transcript", role="agent") and of(m, "audio_end"), 30
        )
        greeting = of(seen, "transcript", role="agent")[0]["text"]
        assert greeting.startswith(CONSENT)  # a browser caller's state is unknown: announced
        pcm = synthesize_at("thank you goodbye", rate).tobytes() + bytes(rate * 3)
        step = rate // 50 * 2
        for i in range(0, len(pcm), step):
            sent.append(pcm[i : i + step])
            payload = base64.b64encode(pcm[i : i + step]).decode()
            await ws.send_message(json.dumps({"event": "audio", "payload": payload}))
        with trio.fail_after(30):
            try:
                while True:
                    seen.append(json.loads(await ws.get_message()))
            except trio_websocket.ConnectionClosed:
                pass
    received = [base64.b64decode(m["payload"]) for m in of(seen, "audio")]
    session_id = UUID(session["session_id"])
    _, blob, key = await recording_of(store, tmp_path, h.tenant_id, session_id)
    _, records = read_records(blob, key)
    caller, agent = tracks(records)
    assert [r.data for r in caller] == sent
    assert [r.data for r in agent] == received
    assert_increasing(caller)
    assert_increasing(agent)
    assert_no_plaintext(blob, b"".join(received))
    assert_flip_detected(blob, key)
