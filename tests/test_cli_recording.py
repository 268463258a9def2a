"""``switchboard recording``: the private key's holder (or the server) decrypts; others cannot."""

from __future__ import annotations

import base64
import io
import json
import wave
from pathlib import Path
from uuid import UUID

import numpy as np
import pytest
from recording_support import rsa_pem_pair

from switchboard.codecs import ulaw_decode, ulaw_encode
from switchboard.codecs.recording_format import (
    Kind,
    Record,
    RecordingHeader,
    SegmentWriter,
    TrackFormat,
    WrappedKey,
    pack_provider_event,
)
from switchboard.orchestrator.agents import AgentSpec, Intent
from switchboard.orchestrator.cli import main
from switchboard.orchestrator.recording_keys import (
    Keyring,
    new_data_key,
    parse_recording_keys,
    wrap_rsa,
)
from switchboard.orchestrator.recording_rows import (
    NewRecording,
    create_recording,
    shred_recording,
)
from switchboard.orchestrator.recording_store import object_key
from switchboard.orchestrator.store import Store

TENANT = "0b9d5a52-8a86-4b1f-a0e7-5f8f0f7a2c11"
SESSION = "6f1c2a1e-3c4b-4d5e-8f90-0a1b2c3d4e5f"


@pytest.fixture(scope="module")
def pems() -> tuple[bytes, bytes, bytes]:
    public, private = rsa_pem_pair()
    return public, private, rsa_pem_pair()[1]


CALLER = [ulaw_encode(np.full(160, 1000 * (i + 1), dtype=np.int16)) for i in range(5)]
AGENT = [ulaw_encode(np.full(160, -700 * (i + 1), dtype=np.int16)) for i in range(3)]
RECORDS = [
    *(Record(Kind.CALLER_AUDIO, 20.0 * i, c) for i, c in enumerate(CALLER)),
    *(Record(Kind.AGENT_AUDIO, 40.0 + 20.0 * i, a) for i, a in enumerate(AGENT)),
    Record(Kind.PROVIDER_EVENT, 50.0, pack_provider_event("local#1", '{"type":"x"}')),
]
RECORDS.sort(key=lambda r: r.t_ms)


def sealed(path: Path, key: WrappedKey, data_key: bytes, **fields: str) -> Path:
    head = RecordingHeader(
        session_id=fields.get("session_id", SESSION),
        tenant_id=fields.get("tenant_id", TENANT),
        caller=TrackFormat("pcmu", 8000),
        agent=TrackFormat("pcmu", 8000),
        started_at="2026-12-04T15:00:00+00:00",
        key=key,
    )
    writer = SegmentWriter(data_key, head)
    path.write_bytes(
        writer.start() + writer.seal(RECORDS[:4]) + writer.seal(RECORDS[4:], last=True)
    )
    return path


def rsa_recording(tmp_path: Path, public: bytes) -> Path:
    data_key = new_data_key()
    kid, wrapped = wrap_rsa(public, data_key)
    return sealed(tmp_path / "call.sbrec", WrappedKey("rsa", kid, wrapped), data_key)


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(path.read_bytes())) as reader:
        channels = reader.getnchannels()
        frames = reader.readframes(reader.getnframes())
    return channels, np.frombuffer(frames, dtype="<i2").reshape(-1, channels)


def test_the_private_key_decrypts_both_tracks(
    tmp_path: Path, pems: tuple[bytes, bytes, bytes]
) -> None:
    public, private, _ = pems
    (tmp_path / "private.pem").write_bytes(private)
    rec = rsa_recording(tmp_path, public)
    out = tmp_path / "call.wav"
    assert (
        main(
            [
                "recording",
                "decrypt",
                str(rec),
                "-o",
                str(out),
                "--key",
                str(tmp_path / "private.pem"),
            ]
        )
        == 0
    )
    channels, samples = read_wav(out)
    assert channels == 2 and len(samples) == 800
    assert np.array_equal(samples[:, 0], ulaw_decode(b"".join(CALLER)))
    assert not samples[:320, 1].any()
    assert np.array_equal(samples[320:800, 1], ulaw_decode(b"".join(AGENT)))

    agent_only = tmp_path / "agent.wav"
    argv = ["recording", "decrypt", str(rec), "-o", str(agent_only), "--track", "agent"]
    assert main([*argv, "--key", str(tmp_path / "private.pem")]) == 0
    channels, samples = read_wav(agent_only)
    assert channels == 1 and np.array_equal(samples[320:, 0], ulaw_decode(b"".join(AGENT)))


def test_raw_writes_the_records_as_recorded(
    tmp_path: Path, pems: tuple[bytes, bytes, bytes]
) -> None:
    public, private, _ = pems
    (tmp_path / "private.pem").write_bytes(private)
    rec = rsa_recording(tmp_path, public)
    out = tmp_path / "call.jsonl"
    argv = ["recording", "decrypt", str(rec), "-o", str(out), "--raw"]
    assert main([*argv, "--key", str(tmp_path / "private.pem")]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["header"]["session_id"] == SESSION
    body = lines[1:]
    assert [(r["kind"], r["t_ms"]) for r in body] == [
        (r.kind.name.lower(), r.t_ms) for r in RECORDS
    ]
    audio = [base64.b64decode(r["data"]) for r in body if r["kind"] == "caller_audio"]
    assert audio == CALLER
    assert {
        "kind": "provider_event",
        "t_ms": 50.0,
        "source": "local#1",
        "text": '{"type":"x"}',
    } in body


def test_the_wrong_private_key_and_the_server_cannot_open_an_rsa_recording(
    tmp_path: Path, pems: tuple[bytes, bytes, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    public, _, other = pems
    (tmp_path / "other.pem").write_bytes(other)
    rec = rsa_recording(tmp_path, public)
    out = tmp_path / "call.wav"
    assert (
        main(
            ["recording", "decrypt", str(rec), "-o", str(out), "--key", str(tmp_path / "other.pem")]
        )
        == 2
    )
    assert "this recording was sealed for rsa:" in capsys.readouterr().err
    assert (
        main(["recording", "decrypt", str(rec), "-o", str(out), "--data-dir", str(tmp_path)]) == 2
    )
    assert "the server cannot open it; pass --key private.pem" in capsys.readouterr().err
    assert not out.exists()


def test_an_altered_or_truncated_file_is_refused_and_nothing_written(
    tmp_path: Path, pems: tuple[bytes, bytes, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    public, private, _ = pems
    key = tmp_path / "private.pem"
    key.write_bytes(private)
    rec = rsa_recording(tmp_path, public)
    blob = rec.read_bytes()
    out = tmp_path / "call.wav"
    argv = ["recording", "decrypt", str(rec), "-o", str(out), "--key", str(key)]

    rec.write_bytes(blob[:-30] + bytes([blob[-30] ^ 0x10]) + blob[-29:])
    assert main(argv) == 1
    assert "segment 2 failed authentication: the file was altered" in capsys.readouterr().err
    assert not out.exists()

    rec.write_bytes(blob[:-5])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "truncated: segment 2 is cut short" in err and "--allow-truncated" in err
    assert main([*argv, "--allow-truncated"]) == 0
    _, samples = read_wav(out)
    first_flush = [r.data for r in RECORDS[:4] if r.kind is Kind.CALLER_AUDIO]
    assert len(first_flush) == 3
    assert np.array_equal(samples[:, 0], ulaw_decode(b"".join(first_flush)))


def test_keygen_prints_an_entry_recording_keys_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recording", "keygen", "--kid", "k2"]) == 0
    entry = capsys.readouterr().out.strip()
    [(kid, key)] = parse_recording_keys(entry)
    assert kid == "k2" and len(key) == 32
    assert main(["recording", "keygen"]) == 0
    again = capsys.readouterr().out.strip()
    assert again.startswith("k20") and again != entry


def _session(store: Store) -> tuple[UUID, UUID]:
    agent_id = store.apply_agent(
        AgentSpec(
            name="desk",
            tenant="acme",
            greeting="Hello",
            intents=(Intent("bye", ("bye",), "Bye!", "hangup_call"),),
        )
    )
    tenant_id = store.ensure_tenant("acme")
    return tenant_id, store.create_session(tenant_id, agent_id, transport="twilio")


def test_the_server_keyring_decrypts_through_the_database_row(
    tmp_path: Path,
    store: Store,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant_id, session_id = _session(store)
    k1 = "k1=" + base64.b64encode(bytes([1]) * 32).decode()
    data_key = new_data_key()
    kid, wrapped = Keyring.from_setting(k1).wrap(data_key)
    rec = sealed(
        tmp_path / "call.sbrec",
        WrappedKey("keyring", kid),
        data_key,
        tenant_id=str(tenant_id),
        session_id=str(session_id),
    )
    create_recording(
        store,
        NewRecording(
            tenant_id,
            session_id,
            object_key=object_key(tenant_id, session_id),
            key_kind="keyring",
            kid=kid,
            wrapped_key=wrapped,
            caller_encoding="pcmu",
            caller_sample_rate=8000,
            agent_encoding="pcmu",
            agent_sample_rate=8000,
        ),
    )
    k2 = "k2=" + base64.b64encode(bytes([2]) * 32).decode()
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RECORDING_KEYS", f"{k2},{k1}")  # rotated since: k1 still decrypts
    out = tmp_path / "call.wav"
    argv = ["recording", "decrypt", str(rec), "-o", str(out), "--track", "caller"]
    assert main([*argv, "--data-dir", str(tmp_path)]) == 0
    _, samples = read_wav(out)
    assert np.array_equal(samples[:, 0], ulaw_decode(b"".join(CALLER)))

    monkeypatch.setenv("RECORDING_KEYS", k2)  # k1 retired: it cannot be opened here
    assert main([*argv, "--data-dir", str(tmp_path)]) == 1
    assert "no recording key 'k1' here" in capsys.readouterr().err

    monkeypatch.setenv("RECORDING_KEYS", k1)
    shred_recording(store, tenant_id, session_id)
    out.unlink()
    assert main([*argv, "--data-dir", str(tmp_path)]) == 1
    assert "was deleted" in capsys.readouterr().err and not out.exists()
