"""The call recorder on Trio's MockClock: a sealed segment every second, failures as events.

The recordings rows are replaced by an in-memory table (the end-to-end tests
in ``test_recording_calls.py`` use PostgreSQL); the store is the real local
folder store, or one that fails.
"""

from __future__ import annotations

import fcntl
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.messages import CallEvent
from switchboard.actors.tape import CallTape, RecordingTape
from switchboard.codecs.recording_format import Kind, Record, read_header, read_records
from switchboard.orchestrator import recording
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.errors import StorageError
from switchboard.orchestrator.recording import (
    CallRecorder,
    Recordings,
    recover_recordings,
    staging_path,
    with_recording,
)
from switchboard.orchestrator.recording_keys import Keyring, new_data_key, unwrap_rsa
from switchboard.orchestrator.recording_policy import RecordingPolicy
from switchboard.orchestrator.recording_rows import NewRecording
from switchboard.orchestrator.recording_store import (
    LocalRecordingStore,
    RecordingStoreError,
    object_key,
)

AGENT = parse_agent_yaml(
    "name: t\ntenant: t\ngreeting: Hello.\n"
    "intents:\n  - name: bye\n    phrases: [bye]\n    reply: bye\n"
    "recording: {enabled: true, retention_days: 7}\n"
)
FRAME = bytes(range(160))


@dataclass
class Row:
    new: NewRecording
    status: str = "recording"
    size_bytes: int | None = None
    duration_ms: int | None = None

    @property
    def kid(self) -> str:
        return self.new.kid

    @property
    def wrapped_key(self) -> bytes:
        return self.new.wrapped_key


@dataclass
class Rows:
    """The recordings table, in memory; ``fail`` makes the named function raise."""

    rows: dict[UUID, Row] = field(default_factory=dict)
    public_pem: bytes | None = None
    fail: set[str] = field(default_factory=set)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(recording, "create_recording", self.create)
        monkeypatch.setattr(recording, "finish_recording", self.finish)
        monkeypatch.setattr(recording, "get_recording", self.get)
        monkeypatch.setattr(recording, "tenant_public_key", lambda store, tenant: self.public_pem)

    def create(self, store: Any, new: NewRecording) -> Row:
        if "create" in self.fail:
            raise StorageError("PostgreSQL is away")
        self.rows[new.session_id] = Row(new)
        return self.rows[new.session_id]

    def finish(self, store: Any, tenant_id: UUID, session_id: UUID, **kw: Any) -> Row:
        row = self.rows[session_id]
        row.status, row.size_bytes, row.duration_ms = (
            kw["status"],
            kw["size_bytes"],
            kw["duration_ms"],
        )
        return row

    def get(self, store: Any, tenant_id: UUID, session_id: UUID) -> Row | None:
        return self.rows.get(session_id)


class FailingStore(LocalRecordingStore):
    def put_file(self, key: str, path: Path) -> None:
        raise RecordingStoreError("the bucket is unreachable")


@pytest.fixture
def rows(monkeypatch: pytest.MonkeyPatch) -> Rows:
    table = Rows()
    table.install(monkeypatch)
    return table


def recordings_in(tmp_path: Path, store: LocalRecordingStore | None = None) -> Recordings:
    return Recordings(
        keyring=Keyring.load_or_create(tmp_path),
        store=store or LocalRecordingStore(tmp_path / "recordings"),
        data_dir=tmp_path,
    )


def recorded_call(recordings: Recordings) -> CallContext:
    ctx = CallContext(uuid4(), uuid4(), uuid4(), AGENT, t0=trio.current_time())
    return with_recording(ctx, recordings, caller_state="CA")


async def run_recorder(
    ctx: CallContext, recordings: Recordings, talk: Any
) -> tuple[CallRecorder, list[CallEvent]]:
    """Run a recorder beside ``talk(ctx, recorder)``; return it and the events it logged."""
    send, receive = trio.open_memory_channel[CallEvent](100)
    recorder = CallRecorder(ctx, recordings, None, EventSink(ctx, send))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        await talk(ctx, recorder)
        # No deadline: MockClock's autojump skips ahead while the upload runs in a thread.
        await recorder.finish(timeout_s=math.inf)
    return recorder, [e async for e in receive]


async def opened(recorder: CallRecorder) -> None:
    """Until the start step is over (the row and the key are made in threads, during
    which the autojump clock would move on without the call)."""
    await recorder.ready.wait()


def stored(recordings: Recordings, ctx: CallContext) -> bytes:
    assert isinstance(recordings.store, LocalRecordingStore)
    return recordings.store.get(object_key(ctx.tenant_id, ctx.session_id))


async def test_a_segment_is_sealed_every_second_and_the_times_are_the_call_clock(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, rows: Rows
) -> None:
    recordings = recordings_in(tmp_path)
    sizes: list[int] = []
    sent: list[tuple[float, bytes]] = []

    async def talk(ctx: CallContext, recorder: CallRecorder) -> None:
        await opened(recorder)
        tape = ctx.tape
        for i in range(175):  # 3.5 s of 20 ms frames, both ways, and a barge-in
            frame = bytes([i % 256]) * 160
            sent.append(((trio.current_time() - ctx.t0) * 1000, frame))
            tape.caller(frame)
            tape.agent(frame[::-1])
            if i == 100:
                tape.agent_cleared()
            await trio.sleep(0.02)
            if i % 50 == 49:
                await trio.sleep(0.01)  # just past each second's flush
                sizes.append(recorder.path.stat().st_size)

    ctx = recorded_call(recordings)
    recorder, events = await run_recorder(ctx, recordings, talk)
    assert events == []  # nothing failed
    assert sizes == sorted(sizes) and len(set(sizes)) == 3  # the file grew every second
    assert not recorder.path.exists()  # the staging file is gone once stored
    row = rows.rows[ctx.session_id]
    blob = stored(recordings, ctx)
    assert row.status == "complete" and row.size_bytes == len(blob)
    assert row.duration_ms == pytest.approx(sent[-1][0] + 20, abs=30)
    assert row.new.retention_days == 7 and row.new.key_kind == "keyring"
    header, records = read_records(blob, recordings.keyring.unwrap(row.kid, row.wrapped_key))
    assert header.session_id == str(ctx.session_id) and header.key.wrapped is None
    caller = [(r.t_ms, r.data) for r in records if r.kind == Kind.CALLER_AUDIO]
    assert caller == sent  # exactly the frames, at exactly the call clock's times
    cleared = [r for r in records if r.kind == Kind.AGENT_CLEARED]
    assert [r.t_ms for r in cleared] == [sent[100][0]]


async def test_a_tenant_with_a_public_key_gets_recordings_only_its_private_key_opens(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, rows: Rows
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rows.public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    recordings = recordings_in(tmp_path)

    async def talk(ctx: CallContext, recorder: CallRecorder) -> None:
        await opened(recorder)
        ctx.tape.caller(FRAME)
        await trio.sleep(0.5)

    ctx = recorded_call(recordings)
    await run_recorder(ctx, recordings, talk)
    row = rows.rows[ctx.session_id]
    blob = stored(recordings, ctx)
    header = read_header(blob)
    assert row.new.key_kind == "rsa" and header.key.kind == "rsa"
    assert header.key.wrapped == row.wrapped_key  # in the file too: the CLI needs no row
    data_key = unwrap_rsa(private_pem, row.wrapped_key)
    _, records = read_records(blob, data_key)
    assert [r.data for r in records] == [FRAME]


async def test_a_recording_that_cannot_start_is_an_error_event_and_keeps_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, rows: Rows
) -> None:
    rows.fail.add("create")
    recordings = recordings_in(tmp_path)
    pending: list[int] = []

    async def talk(ctx: CallContext, recorder: CallRecorder) -> None:
        assert isinstance(ctx.tape, RecordingTape)
        await opened(recorder)
        for _ in range(100):  # the call goes on; its audio is not kept
            ctx.tape.caller(FRAME)
            await trio.sleep(0.02)
        pending.append(ctx.tape.pending)

    ctx = recorded_call(recordings)
    recorder, events = await run_recorder(ctx, recordings, talk)
    (error,) = events
    assert error.type == "error" and error.payload["where"] == "recording"
    assert error.payload["step"] == "start" and "PostgreSQL is away" in error.payload["detail"]
    assert pending[0] <= 50  # emptied every second, never piling up for the whole call
    assert recorder.status == "failed" and not recorder.path.exists()
    assert rows.rows == {}


async def test_an_upload_that_fails_leaves_the_staging_file_which_the_next_start_recovers(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, rows: Rows
) -> None:
    recordings = recordings_in(tmp_path, FailingStore(tmp_path / "recordings"))

    last_ms: list[float] = []

    async def talk(ctx: CallContext, recorder: CallRecorder) -> None:
        await opened(recorder)
        for _ in range(60):
            last_ms[:] = [ctx.now_ms()]
            ctx.tape.caller(FRAME)
            await trio.sleep(0.02)

    ctx = recorded_call(recordings)
    recorder, events = await run_recorder(ctx, recordings, talk)
    (error,) = events
    assert error.payload["step"] == "upload" and error.payload["where"] == "recording"
    assert recorder.path.exists() and rows.rows[ctx.session_id].status == "recording"

    working = replace(recordings, store=LocalRecordingStore(tmp_path / "recordings"))
    assert recover_recordings(None, working) == 1  # type: ignore[arg-type]
    row = rows.rows[ctx.session_id]
    assert row.status == "truncated" and not recorder.path.exists()
    assert row.duration_ms == round(last_ms[0])  # the last record's time: keyring mode reads it
    blob = stored(working, ctx)
    _, records = read_records(blob, recordings.keyring.unwrap(row.kid, row.wrapped_key))
    assert len(records) == 60


async def test_recovery_leaves_a_live_call_staging_file_alone(tmp_path: Path, rows: Rows) -> None:
    recordings = recordings_in(tmp_path)
    ctx = recorded_call(recordings)
    path = staging_path(tmp_path, ctx)
    path.parent.mkdir(parents=True)
    with path.open("wb") as live:
        fcntl.flock(live.fileno(), fcntl.LOCK_EX)
        assert recover_recordings(None, recordings) == 0  # type: ignore[arg-type]
        assert path.exists()
    assert recover_recordings(None, recordings) == 0  # type: ignore[arg-type]
    assert not path.exists()  # no header: the process died before writing it


def test_only_a_recording_agent_on_a_recording_server_gets_a_tape(tmp_path: Path) -> None:
    recordings = Recordings(
        keyring=Keyring([("k1", new_data_key())]), store=None, data_dir=tmp_path
    )  # type: ignore[arg-type]
    ctx = CallContext(uuid4(), uuid4(), uuid4(), AGENT, t0=0.0)
    assert type(with_recording(ctx, None).tape) is CallTape
    quiet = replace(ctx, agent=replace(AGENT, recording=RecordingPolicy(enabled=False)))
    assert with_recording(quiet, recordings) is quiet
    recorded = with_recording(ctx, recordings, caller_state="tx")
    assert isinstance(recorded.tape, RecordingTape) and recorded.session_id == ctx.session_id
    assert recorded.consent is not None and recorded.consent.state == "TX"
    assert recorded.greeting == "Hello."
    announced = with_recording(ctx, recordings, caller_state=None)
    assert announced.greeting == "This call is recorded. Hello."


def test_the_tape_records_in_order_with_the_call_clock() -> None:
    now = iter([1.0, 2.5, 4.0])
    tape = RecordingTape(lambda: next(now))
    tape.caller(b"a")
    tape.agent(b"b")
    tape.agent_cleared()
    assert tape.take() == [
        Record(Kind.CALLER_AUDIO, 1.0, b"a"),
        Record(Kind.AGENT_AUDIO, 2.5, b"b"),
        Record(Kind.AGENT_CLEARED, 4.0, b""),
    ]
    assert tape.take() == []
