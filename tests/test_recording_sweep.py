"""The retention sweep: against a real PostgreSQL and a local store; its timer on MockClock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
import trio
from test_recording_rows import _call, _new

from switchboard.orchestrator.errors import StorageError
from switchboard.orchestrator.recording_rows import (
    create_recording,
    finish_recording,
    get_recording,
)
from switchboard.orchestrator.recording_store import (
    LocalRecordingStore,
    RecordingMissing,
    RecordingStore,
    RecordingStoreError,
    object_key,
)
from switchboard.orchestrator.recording_sweep import keep_sweeping, sweep_once
from switchboard.orchestrator.store import Store


def _recorded(
    store: Store, objects: RecordingStore, tmp_path: Path, tenant: str, expires: datetime | None
) -> tuple[UUID, UUID]:
    """A finished recording of a new call of ``tenant``, its object stored, expiring then."""
    tenant_id, session_id = _call(store, tenant)
    create_recording(store, _new(tenant_id, session_id, retention_days=None))
    staged = tmp_path / f"{session_id}.part"
    staged.write_bytes(b"sealed " + session_id.bytes)
    objects.put_file(object_key(tenant_id, session_id), staged)
    finish_recording(store, tenant_id, session_id, status="complete", size_bytes=23, duration_ms=1)
    if expires is not None:
        with store.db.tenant(tenant_id) as cur:
            cur.execute(
                "UPDATE recordings SET expires_at = %s WHERE session_id = %s", (expires, session_id)
            )
    return tenant_id, session_id


class FlakyStore:
    """A local store whose deletes of ``failing`` keys fail."""

    def __init__(self, inner: LocalRecordingStore, failing: set[str]) -> None:
        self.inner, self.failing = inner, failing

    def put_file(self, key: str, path: Path) -> None:
        self.inner.put_file(key, path)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def delete(self, key: str) -> None:
        if key in self.failing:
            raise RecordingStoreError("the bucket is away")
        self.inner.delete(key)


async def test_a_sweep_shreds_what_expired_of_every_tenant_and_nothing_else(
    store: Store, tmp_path: Path
) -> None:
    objects = LocalRecordingStore(tmp_path / "recordings")
    now = datetime.now(UTC)
    past = [
        _recorded(store, objects, tmp_path, tenant, now - timedelta(minutes=m))
        for tenant, m in (("acme", 5), ("bravo", 60), ("acme", 1))
    ]
    kept = [
        _recorded(store, objects, tmp_path, "acme", now + timedelta(hours=1)),
        _recorded(store, objects, tmp_path, "bravo", None),
    ]
    assert await sweep_once(store, objects, batch=2) == 3  # two batches
    for tenant_id, session_id in past:
        row = get_recording(store, tenant_id, session_id)
        assert row is not None and (row.status, row.wrapped_key) == ("deleted", None)
        with pytest.raises(RecordingMissing):
            objects.get(object_key(tenant_id, session_id))
    for tenant_id, session_id in kept:
        row = get_recording(store, tenant_id, session_id)
        assert row is not None and row.status == "complete" and row.wrapped_key is not None
        assert objects.get(object_key(tenant_id, session_id)) == b"sealed " + session_id.bytes
    assert await sweep_once(store, objects) == 0
    later = now + timedelta(hours=2)
    assert await sweep_once(store, objects, now=later) == 1
    assert get_recording(store, *kept[1]) is not None  # no retention: kept


async def test_a_failed_object_delete_does_not_stop_the_sweep(store: Store, tmp_path: Path) -> None:
    inner = LocalRecordingStore(tmp_path / "recordings")
    past = datetime.now(UTC) - timedelta(minutes=1)
    first = _recorded(store, inner, tmp_path, "acme", past)
    second = _recorded(store, inner, tmp_path, "bravo", past)
    objects = FlakyStore(inner, {object_key(*first)})
    assert await sweep_once(store, objects) == 2
    for call in (first, second):
        row = get_recording(store, *call)
        assert row is not None and row.wrapped_key is None  # the key is gone either way
    assert inner.get(object_key(*first))  # left for the operator, undecryptable
    with pytest.raises(RecordingMissing):
        inner.get(object_key(*second))


async def test_the_sweep_runs_at_start_then_every_interval_and_survives_failures(
    autojump_clock: trio.abc.Clock,
) -> None:
    rounds: list[float] = []

    async def sweep(store: Store, objects: RecordingStore) -> int:
        rounds.append(trio.current_time())
        if len(rounds) == 2:
            raise StorageError("PostgreSQL is away")
        if len(rounds) == 3:
            raise RecordingStoreError("the bucket is away")
        return 1

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: keep_sweeping(None, None, 3600.0, sweep=sweep)  # type: ignore[arg-type]
        )
        await trio.sleep(4 * 3600 + 1)
        nursery.cancel_scope.cancel()
    assert [t - start for t in rounds] == [0, 3600, 7200, 10800, 14400]
