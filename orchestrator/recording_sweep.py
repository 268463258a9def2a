"""The retention sweep: recordings past their ``expires_at`` are crypto-shredded.

Each round (:func:`sweep_once`) takes the expired recordings of every tenant
(:func:`.recording_rows.expired_recordings`, in batches), destroys each one's
wrapped data key (:func:`.recording_rows.shred_recording`, committed first),
then deletes its object from the recording store. :func:`keep_sweeping` runs a
round at start and then every ``RECORDING_SWEEP_INTERVAL_S`` (3600 s).

The server runs it in one process (the parent with ``--workers N``); several
server instances sweeping one database at once is safe, since shredding and
deleting are both idempotent (they only repeat each other's work).

A failure (PostgreSQL or the store away) is logged and the next round tries
again; an object whose deletion failed after its key was destroyed cannot be
decrypted any more, and is logged with its key for the operator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

import structlog
import trio

from .errors import StorageError
from .recording_rows import SWEEP_BATCH, expired_recordings, shred_recording
from .recording_store import RecordingStore, RecordingStoreError
from .store import Store

__all__ = ["keep_sweeping", "sweep_once"]

log = structlog.get_logger("switchboard.recording_sweep")


async def sweep_once(
    store: Store, objects: RecordingStore, *, now: datetime | None = None, batch: int = SWEEP_BATCH
) -> int:
    """Shred every recording whose retention ended by ``now`` (default: the wall clock,
    UTC); return how many were shredded.

    Raises:
        StorageError: PostgreSQL failed (what was shredded before stays shredded).
    """
    at = now or datetime.now(UTC)
    shredded = 0
    while True:
        rows = await trio.to_thread.run_sync(partial(expired_recordings, store, at, limit=batch))
        for row in rows:
            gone = await trio.to_thread.run_sync(
                shred_recording, store, row.tenant_id, row.session_id
            )
            if gone is None:
                continue
            shredded += 1
            try:
                await trio.to_thread.run_sync(objects.delete, gone.object_key)
            except RecordingStoreError as exc:
                log.warning(
                    "recording shredded, its object not deleted",
                    key=gone.object_key,
                    error=str(exc)[:300],
                )
            log.info(
                "recording.expired",
                tenant_id=str(row.tenant_id),
                session_id=str(row.session_id),
                expires_at=row.expires_at.isoformat() if row.expires_at else None,
            )
        if len(rows) < batch:
            return shredded


async def keep_sweeping(
    store: Store,
    objects: RecordingStore,
    interval_s: float = 3600.0,
    *,
    sweep: Callable[[Store, RecordingStore], Awaitable[int]] = sweep_once,
) -> None:
    """Run ``sweep`` at once, then every ``interval_s`` seconds, for as long as the server
    runs; a failed round is logged and does not stop the next."""
    while True:
        try:
            shredded = await sweep(store, objects)
            if shredded:
                log.info("recordings swept", shredded=shredded)
        except (StorageError, RecordingStoreError) as exc:
            log.warning("recording sweep failed; next round later", error=str(exc)[:300])
        await trio.sleep(interval_s)
