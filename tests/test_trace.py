"""The call trace: ``switchboard trace export`` / ``import`` / ``show``, and agent versions.

A real call runs through ``run_call`` against the real PostgreSQL (its events,
turns, call log and ``session.start``'s agent version are the runtime's own),
with the OpenAI Realtime fake and a fake Twilio; a recorded one goes through
the call recorder (``orchestrator/recording.py``: the transport's taps, the
provider's messages, sealed segments, the stored object and its row). The
trace goes out of one installation (a database and a data folder) and into
another through the CLI, as an engineer would move it. The RSA case builds its
rows and sealed file directly.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import psycopg
import pytest
import trio
from call_harness import FakeTwilio, transport_for
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pg_support import fresh_database

from switchboard.actors.context import CallContext
from switchboard.actors.providers import Endpoints
from switchboard.codecs import twilio_media as wire
from switchboard.codecs import ulaw_encode
from switchboard.codecs.recording_format import (
    Kind,
    Record,
    RecordingHeader,
    SegmentWriter,
    TrackFormat,
    WrappedKey,
    pack_provider_event,
)
from switchboard.orchestrator import cli
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.agent_versions import get_version, spec_version
from switchboard.orchestrator.agents import AgentSpec
from switchboard.orchestrator.call import CallResources, run_call
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.embedded_pg import EmbeddedPostgres
from switchboard.orchestrator.recording import Recordings, with_recording
from switchboard.orchestrator.recording_keys import Keyring, UnknownKey, new_data_key, wrap_rsa
from switchboard.orchestrator.recording_rows import (
    NewRecording,
    create_recording,
    finish_recording,
    get_recording,
)
from switchboard.orchestrator.recording_store import LocalRecordingStore, object_key
from switchboard.orchestrator.store import EventRow, Store
from switchboard.orchestrator.trace_file import read_trace
from switchboard.testing import Script, ToolStep, Turn, memory_router
from switchboard.testing.fake_openai_realtime import FakeOpenAIRealtime
from switchboard.testing.speech import speak

AGENT_YAML = (
    "name: desk\ntenant: acme\ngreeting: Thanks for calling Acme.\n"
    "instructions: You are the receptionist.\nmode: openai-realtime\n"
    'idle_timeout_seconds: 60\nintents: []\nhours: {monday: "09:00-17:00"}\n'
    'phone_numbers: ["+15550001234"]\n'
)
ENDPOINTS = Endpoints(openai_realtime_url="wss://openai.fake/v1/realtime", openai_api_key="sk-t")
LINE = "what are your opening hours"
FRAME = 160  # 20 ms of G.711 mu-law at 8 kHz


@pytest.fixture
def target_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A second, fresh and migrated database: the installation a trace is imported into."""
    with fresh_database(pg_server, "target") as url:
        yield url


def agent(greeting: str = "Thanks for calling Acme.", *, recorded: bool = False) -> AgentSpec:
    text = AGENT_YAML.replace("Thanks for calling Acme.", greeting)
    if recorded:
        text += "recording: {enabled: true, announce: never}\n"
    return parse_agent_yaml(text)


class Placed:
    """A call placed through ``run_call`` against the real store."""

    def __init__(self, ctx: CallContext, twilio: FakeTwilio, sent: list[tuple[float, bytes]]):
        self.ctx, self.twilio, self.sent = ctx, twilio, sent


async def place(
    store: Store,
    spec: AgentSpec,
    script: Script,
    *,
    recordings: Recordings | None = None,
    speak_at_s: float | None = None,
    hang_up_s: float = 1.0,
) -> Placed:
    """One phone call to ``spec`` (applied first), the caller saying LINE at ``speak_at_s``."""
    agent_id = await trio.to_thread.run_sync(store.apply_agent, spec)
    tenant_id = await trio.to_thread.run_sync(store.ensure_tenant, spec.tenant)
    session_id = await trio.to_thread.run_sync(
        lambda: store.create_session(
            tenant_id, agent_id, transport="twilio", call_sid="CA1", from_number="+15550009999"
        )
    )
    t0 = trio.current_time()
    ctx = with_recording(
        CallContext(session_id, tenant_id, agent_id, spec, t0, call_sid="CA1", stream_sid="MZ1"),
        recordings,
    )
    twilio = FakeTwilio()
    res = CallResources(
        store=store,
        endpoints=ENDPOINTS,
        connect=memory_router({"openai.fake": FakeOpenAIRealtime(script).handler}),
        recordings=recordings,
    )
    line = ulaw_encode(speak(LINE, 8000)) if speak_at_s is not None else b""
    sent: list[tuple[float, bytes]] = []
    encoder = wire.InboundEncoder("MZ1", "CA1", "AC1")

    async def caller() -> None:
        pending = b""
        for frame in range(round(hang_up_s / 0.02)):
            if speak_at_s is not None and frame == round(speak_at_s / 0.02):
                pending = line
            payload, pending = pending[:FRAME].ljust(FRAME, b"\xff"), pending[FRAME:]
            sent.append((ctx.now_ms(), payload))
            await twilio.to_server.send(encoder.media(payload))
            await trio.sleep(0.02)
        await twilio.to_server.send(encoder.stop())

    async with trio.open_nursery() as nursery:
        twilio.nursery = nursery
        nursery.start_soon(caller)
        await run_call(ctx, transport_for(ctx, twilio), res)
        nursery.cancel_scope.cancel()
    return Placed(ctx, twilio, sent)


def switchboard(monkeypatch: pytest.MonkeyPatch, url: str, data_dir: Path, *args: str) -> int:
    """The CLI against the installation at ``url`` / ``data_dir``."""
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("RECORDING_KEYS", raising=False)
    monkeypatch.delenv("RECORDING_STORE", raising=False)
    return cli.main([*args, "--data-dir", str(data_dir)] if args[1] != "show" else list(args))


def parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


async def test_a_recorded_call_exported_and_imported_elsewhere_round_trips(
    store: Store,
    database_url: str,
    target_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hours = Turn(
        caller_text=LINE,
        say="Let me check.",
        tool=ToolStep("lookup_hours"),
        then_say="We are open nine to five.",
    )
    source_dir, target_dir = tmp_path / "source", tmp_path / "target"
    recordings = Recordings(
        Keyring.load_or_create(source_dir),
        LocalRecordingStore(source_dir / "recordings"),
        source_dir,
    )
    placed = await place(
        store,
        agent(recorded=True),
        Script(turns=(hours,)),
        recordings=recordings,
        speak_at_s=1.2,
        hang_up_s=6.0,
    )
    ctx = placed.ctx
    exported, again = tmp_path / "call.trace", tmp_path / "again.trace"

    sid = str(ctx.session_id)
    assert (
        switchboard(
            monkeypatch, database_url, source_dir, "trace", "export", sid, "-o", str(exported)
        )
        == 0
    )
    assert switchboard(monkeypatch, target_url, target_dir, "trace", "import", str(exported)) == 0
    assert f"imported session {sid}" in capsys.readouterr().out
    assert (
        switchboard(monkeypatch, target_url, target_dir, "trace", "export", sid, "-o", str(again))
        == 0
    )

    first, second = read_trace(exported), read_trace(again)
    # The manifest: what the engineer needs to know before opening anything.
    m = first.manifest
    assert (m["format"], m["version"], m["door"], m["session_id"]) == (
        "switchboard-trace",
        1,
        "twilio",
        sid,
    )
    assert m["caller_format"] == {"encoding": "pcmu", "sample_rate": 8000}
    assert m["audio"] == "decrypted" and "decrypted" in m["audio_note"]
    assert m["agent"]["version"] == spec_version(agent(recorded=True))
    # The same events, agent snapshot and tracks, byte for byte, in the other installation.
    assert second.events == first.events
    assert first.events[0]["type"] == "session.start"
    assert first.agent == second.agent == agent(recorded=True).to_json()
    a, b = parts(exported), parts(again)
    for name in (
        "events.jsonl",
        "tape.jsonl",
        "caller.audio",
        "agent.audio",
        "provider.bin",
        "outputs.bin",
        "tools.jsonl",
        "agent.json",
    ):
        assert a[name] == b[name], name
    assert first.records is not None and first.records == second.records
    assert a["caller.audio"] == b"".join(data for _, data in placed.sent)
    # The tape's index: each caller chunk at its time and offset; the clear is marked.
    index = [json.loads(line) for line in a["tape.jsonl"].splitlines()]
    caller = [line for line in index if line["kind"] == "caller"]
    assert [c["bytes"] for c in caller] == [FRAME] * len(placed.sent)
    assert all(c["t_ms"] >= t for c, (t, _) in zip(caller, placed.sent, strict=True))  # received
    assert [c["t_ms"] for c in caller] == sorted(c["t_ms"] for c in caller)
    assert [c["offset"] for c in caller] == [i * FRAME for i in range(len(placed.sent))]
    agent_chunks = [line for line in index if line["kind"] == "agent"]
    assert len(agent_chunks) == len(placed.twilio.media_sent_at) > 0  # as sent to the caller
    # Every message the provider instance sent, in order, named by the instance.
    providers = [line for line in index if line["kind"] == "provider"]
    assert {p["source"] for p in providers} == {"openai-realtime#1"}
    assert json.loads(providers[0]["text"])["type"] == "session.created"
    times = [p["t_ms"] for p in providers]
    assert times == sorted(times)
    # The tool's result, from the events.
    (tool,) = first.tools
    assert tool["name"] == "lookup_hours" and tool["ok"] is True and tool["output"]

    # The other installation has the call as its own: rows, turns, call log, recording.
    with Database(target_url) as db:
        target = Store(db)
        tenant_id = target.tenant_by_name("acme")
        assert tenant_id is not None and tenant_id != ctx.tenant_id
        assert [(t.role, t.text) for t in target.read_turns(tenant_id, ctx.session_id)] == [
            (t.role, t.text) for t in store.read_turns(ctx.tenant_id, ctx.session_id)
        ]
        version = get_version(target, tenant_id, spec_version(agent(recorded=True)))
        assert version is not None and dict(version.spec) == agent(recorded=True).to_json()
        row = get_recording(target, tenant_id, ctx.session_id)
        assert row is not None and row.status == "complete"
        # Sealed again under the target's own key: the source's keyring cannot open it,
        # and the file holds no audio in the clear.
        with pytest.raises(UnknownKey):
            Keyring.load_or_create(source_dir).unwrap(row.kid, row.wrapped_key or b"")
        sealed = (target_dir / "recordings" / row.object_key).read_bytes()
        speech = b"".join(data for _, data in placed.sent if data != b"\xff" * FRAME)
        assert len(speech) > 1000 and speech[200:264] not in sealed
        with db.tenant(tenant_id) as cur:
            cur.execute("SELECT end_reason, turns FROM call_logs WHERE session_id = %s", (sid,))
            assert cur.fetchall() == [("caller hung up", 1)]

    # Importing it again is refused, clearly; --replace puts it in place.
    assert switchboard(monkeypatch, target_url, target_dir, "trace", "import", str(exported)) == 1
    assert "already here" in capsys.readouterr().err
    assert (
        switchboard(
            monkeypatch, target_url, target_dir, "trace", "import", str(exported), "--replace"
        )
        == 0
    )
    assert f"replaced session {sid}" in capsys.readouterr().out
    assert read_trace(exported).events == first.events

    # The call replays from this installation by its session id, and from both trace files.
    # (A recording on the wall clock: each event lagged its cause by the call's processing
    # time, which a busy machine stretches; the order and payloads must match exactly.)
    for replayed in (sid, str(exported), str(again)):
        status = await trio.to_thread.run_sync(
            partial(
                switchboard,
                monkeypatch,
                database_url,
                source_dir,
                "replay",
                replayed,
                "--no-timeline",
                "--tolerance-ms",
                "1000",
            )
        )
        out = capsys.readouterr().out
        assert status == 0 and "MATCH" in out, out

    # `trace show`: the manifest and the counts, for the on-call engineer.
    assert cli.main(["trace", "show", str(exported)]) == 0
    shown = capsys.readouterr().out
    assert f"trace of session {sid}" in shown and "door twilio" in shown
    assert "audio: decrypted" in shown
    assert f"caller {len(placed.sent)} chunks" in shown
    assert "openai-realtime#1:" in shown and f"agent {len(agent_chunks)} chunks" in shown

    # --no-audio leaves the tracks out and says so.
    bare = tmp_path / "bare.trace"
    assert (
        switchboard(
            monkeypatch,
            database_url,
            source_dir,
            "trace",
            "export",
            sid,
            "-o",
            str(bare),
            "--no-audio",
        )
        == 0
    )
    assert read_trace(bare).manifest["audio"] == "left out"
    assert "tape.jsonl" not in parts(bare) and "caller.audio" not in parts(bare)


async def test_a_call_not_recorded_exports_a_trace_that_says_so(
    store: Store,
    database_url: str,
    target_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    placed = await place(store, agent(), Script(), hang_up_s=1.0)
    sid = str(placed.ctx.session_id)
    out = tmp_path / "call.trace"
    assert (
        switchboard(
            monkeypatch, database_url, tmp_path / "a", "trace", "export", sid, "-o", str(out)
        )
        == 0
    )
    trace = read_trace(out)
    assert trace.manifest["audio"] == "not recorded"
    assert trace.records is None
    assert not {"tape.jsonl", "caller.audio", "agent.audio"} & set(parts(out))
    assert [e["type"] for e in trace.events][-1] == "session.end"
    assert switchboard(monkeypatch, target_url, tmp_path / "b", "trace", "import", str(out)) == 0
    again = tmp_path / "again.trace"
    assert (
        switchboard(
            monkeypatch, target_url, tmp_path / "b", "trace", "export", sid, "-o", str(again)
        )
        == 0
    )
    assert read_trace(again).events == trace.events
    assert read_trace(again).manifest["audio"] == "not recorded"


async def test_a_later_agent_apply_does_not_change_what_an_earlier_call_ran_on(
    store: Store, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = await place(store, agent(), Script())
    changed = agent("Welcome to the new Acme.")
    await trio.to_thread.run_sync(store.apply_agent, changed)
    after = await place(store, changed, Script())

    out = tmp_path / "before.trace"
    sid = str(before.ctx.session_id)
    assert (
        switchboard(monkeypatch, database_url, tmp_path, "trace", "export", sid, "-o", str(out))
        == 0
    )
    trace = read_trace(out)
    assert trace.agent is not None and trace.agent["greeting"] == "Thanks for calling Acme."
    assert trace.manifest["agent"]["version"] == spec_version(agent()) != spec_version(changed)
    start = trace.events[0]["payload"]
    assert start["agent_version"] == spec_version(agent())
    newer = store.read_events(after.ctx.tenant_id, after.ctx.session_id)[0]["payload"]
    assert newer["agent_version"] == spec_version(changed)


async def test_a_call_on_an_agent_applied_before_versions_keeps_its_version_at_start(
    store: Store, database_url: str
) -> None:
    spec = agent()
    agent_id = await trio.to_thread.run_sync(store.apply_agent, spec)
    tenant_id = await trio.to_thread.run_sync(store.ensure_tenant, spec.tenant)
    with psycopg.connect(database_url) as owner:  # as if applied before schema version 5
        owner.execute("DELETE FROM agent_versions")
    assert get_version(store, tenant_id, spec_version(spec)) is None
    placed = await place(store, spec, Script())
    kept = get_version(store, tenant_id, spec_version(spec))
    assert kept is not None and kept.agent_id == agent_id and dict(kept.spec) == spec.to_json()
    assert placed.ctx.agent_id == agent_id


def test_applying_the_same_agent_twice_keeps_one_version_and_a_change_another(
    store: Store,
) -> None:
    store.apply_agent(agent())
    store.apply_agent(agent())
    store.apply_agent(agent("Hello again."))
    tenant_id = store.tenant_by_name("acme")
    assert tenant_id is not None
    with store.db.tenant(tenant_id) as cur:
        cur.execute("SELECT version FROM agent_versions ORDER BY created_at")
        versions = [row[0] for row in cur.fetchall()]
    assert sorted(versions) == sorted([spec_version(agent()), spec_version(agent("Hello again."))])
    assert all(len(v) == 64 for v in versions)


def test_files_that_are_not_traces_are_refused_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_zip = tmp_path / "notes.txt"
    not_zip.write_text("hello")
    assert cli.main(["trace", "show", str(not_zip)]) == 1
    assert "not a call trace (not a ZIP file)" in capsys.readouterr().err
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hi")
    assert cli.main(["trace", "show", str(other)]) == 1
    assert "no manifest.json" in capsys.readouterr().err
    future = tmp_path / "future.trace"
    with zipfile.ZipFile(future, "w") as zf:
        zf.writestr("manifest.json", json.dumps({"format": "switchboard-trace", "version": 2}))
    assert cli.main(["trace", "show", str(future)]) == 1
    assert "format version 2" in capsys.readouterr().err
    assert cli.main(["trace", "import", str(future), "--data-dir", str(tmp_path)]) == 1
    assert "version 1 only" in capsys.readouterr().err


def test_export_of_an_unknown_session_says_so(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    out = tmp_path / "x.trace"
    assert (
        switchboard(monkeypatch, database_url, tmp_path, "trace", "export", unknown, "-o", str(out))
        == 1
    )
    assert f"no session {unknown}" in capsys.readouterr().err
    assert not out.exists()


def test_a_recording_sealed_for_the_tenants_rsa_key_needs_the_private_key(
    store: Store,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Built directly (rows, events and the sealed file): the server cannot open it."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    agent_id = store.apply_agent(agent())
    tenant_id = store.ensure_tenant("acme")
    session_id = store.create_session(tenant_id, agent_id, transport="browser")
    now = datetime.now(UTC)
    start = {
        "agent": "desk",
        "agent_version": spec_version(agent()),
        "caller_format": {"encoding": "pcm16", "sample_rate": 16000},
    }
    store.append_events(
        tenant_id,
        session_id,
        [
            EventRow(1, "session.start", now, 0.0, start),
            EventRow(2, "session.end", now, 900.0, {"reason": "caller hung up"}),
        ],
    )
    records = [Record(Kind.CALLER_AUDIO, 20.0 * i, bytes([i]) * 640) for i in range(1, 40)] + [
        Record(Kind.PROVIDER_EVENT, 850.0, pack_provider_event("gemini-live#1", b"\x00{}"))
    ]
    data_key = new_data_key()
    kid, wrapped = wrap_rsa(public_pem, data_key)
    header = RecordingHeader(
        session_id=str(session_id),
        tenant_id=str(tenant_id),
        caller=TrackFormat(encoding="pcm16", sample_rate=16000),
        agent=TrackFormat(encoding="pcm16", sample_rate=16000),
        started_at=now.isoformat(),
        key=WrappedKey(kind="rsa", kid=kid, wrapped=wrapped),
    )
    writer = SegmentWriter(data_key, header)
    sealed = writer.start() + writer.seal(records, last=True)
    key = object_key(tenant_id, session_id)
    create_recording(
        store,
        NewRecording(
            tenant_id, session_id, key, "rsa", kid, wrapped, "pcm16", 16000, "pcm16", 16000
        ),
    )
    staged = tmp_path / "staged"
    staged.write_bytes(sealed)
    LocalRecordingStore(tmp_path / "recordings").put_file(key, staged)
    finish_recording(
        store, tenant_id, session_id, status="complete", size_bytes=len(sealed), duration_ms=900
    )
    out, pem = tmp_path / "call.trace", tmp_path / "private.pem"
    pem.write_bytes(private_pem)
    sid = str(session_id)

    assert (
        switchboard(monkeypatch, database_url, tmp_path, "trace", "export", sid, "-o", str(out))
        == 1
    )
    assert "--key private.pem" in capsys.readouterr().err
    assert not out.exists()
    assert (
        switchboard(
            monkeypatch,
            database_url,
            tmp_path,
            "trace",
            "export",
            sid,
            "-o",
            str(out),
            "--key",
            str(pem),
        )
        == 0
    )
    trace = read_trace(out)
    assert trace.manifest["door"] == "browser" and trace.manifest["audio"] == "decrypted"
    assert trace.records == records
    assert parts(out)["caller.audio"] == b"".join(r.data for r in records[:-1])
