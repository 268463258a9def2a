"""Recordings under ``serve --workers 2``: a playback URL made by one worker plays on the
other, a delete on one is final on both, and the parent's sweep shreds what expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import numpy as np
import pytest
import trio
from test_recording_urls import RATE, sealed_call, tracks, wav_samples
from test_workers import ATTEMPTS, multi_worker_server, worker_of

from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.recording_keys import Keyring as RecordingKeyring
from switchboard.orchestrator.recording_rows import (
    NewRecording,
    create_recording,
    finish_recording,
    get_recording,
)
from switchboard.orchestrator.recording_store import LocalRecordingStore, object_key
from switchboard.orchestrator.server import example_agent_path
from switchboard.orchestrator.store import Store


def _record(store: Store, data_dir: Path, tenant_id: UUID, expires: datetime | None) -> UUID:
    """A finished recording, sealed with the server's own key file, in its default store."""
    agent_id = store.agent_id_by_name(tenant_id, "receptionist")
    assert agent_id is not None
    session_id = store.create_session(tenant_id, agent_id, transport="twilio")
    blob, wrapped = sealed_call(tenant_id, session_id, RecordingKeyring.load_or_create(data_dir))
    key = object_key(tenant_id, session_id)
    create_recording(
        store,
        NewRecording(
            tenant_id,
            session_id,
            object_key=key,
            key_kind="keyring",
            kid=RecordingKeyring.load_or_create(data_dir).primary_kid,
            wrapped_key=wrapped,
            caller_encoding="pcm16",
            caller_sample_rate=RATE,
            agent_encoding="pcm16",
            agent_sample_rate=RATE,
        ),
    )
    staged = data_dir / f"{session_id}.part"
    staged.write_bytes(blob)
    LocalRecordingStore(data_dir / "recordings").put_file(key, staged)
    finish_recording(
        store, tenant_id, session_id, status="complete", size_bytes=len(blob), duration_ms=12_000
    )
    if expires is not None:
        with store.db.tenant(tenant_id) as cur:
            cur.execute(
                "UPDATE recordings SET expires_at = %s WHERE session_id = %s", (expires, session_id)
            )
    return session_id


async def test_urls_deletes_and_the_sweep_across_workers(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORDING_SWEEP_INTERVAL_S", "0.2")
    data_dir = tmp_path / "data"
    tenant = load_agent_file(example_agent_path()).tenant
    async with multi_worker_server(database_url, tmp_path) as server:
        with Database(database_url) as db:
            store = Store(db)
            tenant_id = store.tenant_by_name(tenant)
            assert tenant_id is not None
            kept = _record(store, data_dir, tenant_id, None)
            expired = _record(store, data_dir, tenant_id, datetime.now(UTC) - timedelta(minutes=1))
            headers = {"Authorization": f"Bearer {server.api_key}"}
            made_url = f"{server.url}/v1/calls/{kept}/recording/url"
            for _ in range(ATTEMPTS):
                async with httpx.AsyncClient(timeout=10) as client:
                    made = await client.post(made_url, json={"track": "caller"}, headers=headers)
                assert made.status_code == 200, made.text
                played = await server.get(made.json()["url"].removeprefix(server.url))
                if worker_of(played.headers) != worker_of(made.headers):
                    assert played.status_code == 200, played.text
                    samples = wav_samples(played.content, 1)[:, 0]
                    assert np.array_equal(samples, tracks(kept)[0])
                    break
            else:
                raise AssertionError("no URL was made and played on different workers")
            path = urlsplit(made.json()["url"])
            async with httpx.AsyncClient(timeout=10) as client:
                gone = await client.delete(
                    f"{server.url}/v1/calls/{kept}/recording", headers=headers
                )
            assert gone.status_code == 204
            answers = await server.per_worker(f"{path.path}?{path.query}")
            assert len(answers) == 2
            assert [r.status_code for r in answers.values()] == [403, 403]
            # The parent's sweep (every 0.2 s here) shreds the expired recording.
            with trio.fail_after(30):
                while (row := get_recording(store, tenant_id, expired)) is None or row.wrapped_key:
                    await trio.sleep(0.1)
            assert row.status == "deleted"
            assert not (data_dir / "recordings" / object_key(tenant_id, expired)).exists()
            assert (data_dir / "recordings").is_dir()
