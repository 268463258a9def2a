"""The ``recordings`` rows (schema version 4) and the tenants' recording public keys.

One row per recorded call, keyed by ``(tenant_id, session_id)``; see
``orchestrator/migrations/0004_recordings.sql`` for the columns and their rules.
A row's life: :func:`create_recording` (status ``recording``) when the call's
recording starts, :func:`finish_recording` (``complete`` or ``truncated``) once
its object is stored, :func:`shred_recording` (``deleted``: the wrapped data key
is gone, so the object can never be decrypted again) on a delete or when its
retention ends (:func:`expired_recordings`).

Like :class:`~switchboard.orchestrator.store.Store`'s methods, these functions
are synchronous and blocking (run them with ``trio.to_thread.run_sync``), each
one transaction; a function that names a tenant sees only that tenant's rows
(row-level security, not the SQL here, enforces it).

Errors: :class:`~switchboard.orchestrator.errors.StorageError` for anything
PostgreSQL refuses (a session the tenant does not have, a second recording of
one session); ``ValueError`` for arguments outside the documented values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, final
from uuid import UUID

from .db import Cursor
from .errors import StorageError
from .store import Store

__all__ = [
    "FINISHED_STATUSES",
    "KEY_KINDS",
    "STATUSES",
    "NewRecording",
    "RecordingRow",
    "create_recording",
    "expired_recordings",
    "finish_recording",
    "get_recording",
    "set_tenant_public_key",
    "shred_recording",
    "tenant_public_key",
]

STATUSES: Final = ("recording", "complete", "truncated", "deleted")
FINISHED_STATUSES: Final = ("complete", "truncated")
KEY_KINDS: Final = ("keyring", "rsa")
SWEEP_BATCH: Final = 500
"""The most rows :func:`expired_recordings` returns at once."""

_COLUMNS: Final = (
    "recording_id, tenant_id, session_id, object_key, status, key_kind, kid, wrapped_key,"
    " caller_encoding, caller_sample_rate, agent_encoding, agent_sample_rate,"
    " size_bytes, duration_ms, created_at, finished_at, expires_at, deleted_at"
)


@final
@dataclass(frozen=True, slots=True)
class NewRecording:
    """What a recording's row starts with.

    Attributes:
        object_key: where the store keeps it (:func:`.recording_store.object_key`).
        key_kind: ``"keyring"`` (the server can decrypt) or ``"rsa"`` (only the
            holder of the tenant's private key can).
        kid: the wrapping key's id (a keyring entry, or ``rsa:<fingerprint>``).
        wrapped_key: the data key, wrapped; never the plain key.
        caller_encoding, agent_encoding: the wire encodings, ``"pcmu"`` or ``"pcm16"``
            (``codecs/recording_format.TrackFormat``).
        caller_sample_rate, agent_sample_rate: Hz.
        retention_days: the row expires this many days after it is made (database
            clock); None keeps it until deleted.
    """

    tenant_id: UUID
    session_id: UUID
    object_key: str
    key_kind: str
    kid: str
    wrapped_key: bytes
    caller_encoding: str
    caller_sample_rate: int
    agent_encoding: str
    agent_sample_rate: int
    retention_days: int | None = None

    def __post_init__(self) -> None:
        if self.key_kind not in KEY_KINDS:
            raise ValueError(f"key_kind must be one of {KEY_KINDS}, got {self.key_kind!r}")
        if not self.kid:
            raise ValueError("kid must not be empty")
        if not self.wrapped_key:
            raise ValueError("wrapped_key must not be empty")
        if self.caller_sample_rate <= 0 or self.agent_sample_rate <= 0:
            raise ValueError("sample rates must be positive (Hz)")
        if self.retention_days is not None and self.retention_days < 1:
            raise ValueError(f"retention_days must be at least 1, got {self.retention_days}")


@final
@dataclass(frozen=True, slots=True)
class RecordingRow:
    """A ``recordings`` row.

    ``recording_id`` is the row's identity (a signed URL is bound to it);
    ``wrapped_key`` is None once the recording is deleted; ``size_bytes`` and
    ``duration_ms`` are None until it is finished; times are timezone-aware.
    """

    recording_id: UUID
    tenant_id: UUID
    session_id: UUID
    object_key: str
    status: str
    key_kind: str
    kid: str
    wrapped_key: bytes | None
    caller_encoding: str
    caller_sample_rate: int
    agent_encoding: str
    agent_sample_rate: int
    size_bytes: int | None
    duration_ms: int | None
    created_at: datetime
    finished_at: datetime | None
    expires_at: datetime | None
    deleted_at: datetime | None

    @property
    def playable(self) -> bool:
        """Finished and not deleted: its object is whole (or a kept truncated prefix)."""
        return self.status in FINISHED_STATUSES


def create_recording(store: Store, new: NewRecording) -> RecordingRow:
    """Insert the row of a recording that starts now (status ``recording``).

    Raises:
        StorageError: the tenant has no session ``new.session_id``, or it has a
            recording already.
    """
    with store.db.tenant(new.tenant_id) as cur:
        cur.execute(
            "INSERT INTO recordings (tenant_id, session_id, object_key, key_kind, kid,"
            " wrapped_key, caller_encoding, caller_sample_rate, agent_encoding,"
            " agent_sample_rate, expires_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " CASE WHEN %s::integer IS NULL THEN NULL"
            " ELSE now() + make_interval(days => %s::integer) END)"
            f" RETURNING {_COLUMNS}",
            (
                new.tenant_id,
                new.session_id,
                new.object_key,
                new.key_kind,
                new.kid,
                new.wrapped_key,
                new.caller_encoding,
                new.caller_sample_rate,
                new.agent_encoding,
                new.agent_sample_rate,
                new.retention_days,
                new.retention_days,
            ),
        )
        return _one(cur)


def finish_recording(
    store: Store,
    tenant_id: UUID,
    session_id: UUID,
    *,
    status: str,
    size_bytes: int,
    duration_ms: int,
) -> RecordingRow | None:
    """Mark the recording stored: ``complete``, or ``truncated`` (its last segment is
    missing), with the object's size (bytes) and the call's duration (ms).

    Returns the row, or None when it is no longer ``recording`` (deleted while the
    call ran: then the caller deletes the object it just stored).

    Raises:
        StorageError: the tenant has no recording of ``session_id``.
    """
    if status not in FINISHED_STATUSES:
        raise ValueError(f"status must be one of {FINISHED_STATUSES}, got {status!r}")
    if size_bytes < 0 or duration_ms < 0:
        raise ValueError("size_bytes and duration_ms must be >= 0")
    with store.db.tenant(tenant_id) as cur:
        cur.execute(
            "UPDATE recordings SET status = %s, size_bytes = %s, duration_ms = %s,"
            " finished_at = now() WHERE session_id = %s AND status = 'recording'"
            f" RETURNING {_COLUMNS}",
            (status, size_bytes, duration_ms, session_id),
        )
        row = cur.fetchone()
        if row is not None:
            return _row(row)
        cur.execute("SELECT 1 FROM recordings WHERE session_id = %s", (session_id,))
        if cur.fetchone() is None:
            raise StorageError(f"tenant {tenant_id} has no recording of session {session_id}")
        return None


def get_recording(store: Store, tenant_id: UUID, session_id: UUID) -> RecordingRow | None:
    """The tenant's recording of ``session_id`` (deleted ones too), or None."""
    with store.db.tenant(tenant_id) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM recordings WHERE session_id = %s", (session_id,))
        row = cur.fetchone()
    return None if row is None else _row(row)


def shred_recording(store: Store, tenant_id: UUID, session_id: UUID) -> RecordingRow | None:
    """Destroy the recording's wrapped data key (status ``deleted``), committed before
    this returns; the caller then deletes the object (``row.object_key``).

    Idempotent: a deleted recording stays as it is (``deleted_at`` is the first
    deletion's) and is returned again, so a retry deletes its object again.
    Returns None when the tenant has no recording of ``session_id``.
    """
    with store.db.tenant(tenant_id) as cur:
        cur.execute(
            "UPDATE recordings SET wrapped_key = NULL, status = 'deleted',"
            " deleted_at = COALESCE(deleted_at, now()) WHERE session_id = %s"
            f" RETURNING {_COLUMNS}",
            (session_id,),
        )
        row = cur.fetchone()
    return None if row is None else _row(row)


def expired_recordings(
    store: Store, now: datetime, *, limit: int = SWEEP_BATCH
) -> list[RecordingRow]:
    """Recordings of every tenant whose retention ended by ``now`` (timezone-aware) and
    that are not deleted, oldest expiry first, at most ``limit``. A row still
    ``recording`` is left for a day past its expiry (its call may still run)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    with store.db.anonymous() as cur:
        cur.execute(
            "SELECT tenant_id, session_id FROM switchboard_expired_recordings(%s, %s)",
            (now, limit),
        )
        found = cur.fetchall()
    rows = [get_recording(store, _as_uuid(t), _as_uuid(s)) for t, s in found]
    return [row for row in rows if row is not None]


def tenant_public_key(store: Store, tenant_id: UUID) -> bytes | None:
    """The tenant's RSA public key for recordings (PEM bytes), or None (the server
    keyring wraps its recordings)."""
    with store.db.tenant(tenant_id) as cur:
        cur.execute("SELECT recording_public_key FROM tenants WHERE id = %s", (tenant_id,))
        row = cur.fetchone()
    return None if row is None or row[0] is None else str(row[0]).encode()


def set_tenant_public_key(store: Store, tenant_id: UUID, pem: bytes | None) -> None:
    """Set (or with None, clear) the tenant's recording public key; recordings made from
    then on are wrapped for it. Check the key before (the CLI does).

    Raises:
        StorageError: no such tenant, or the text is not a PEM public key.
    """
    with store.db.tenant(tenant_id) as cur:
        cur.execute(
            "UPDATE tenants SET recording_public_key = %s WHERE id = %s",
            (None if pem is None else pem.decode("ascii"), tenant_id),
        )
        if cur.rowcount != 1:
            raise StorageError(f"no tenant {tenant_id}")


def _one(cur: Cursor) -> RecordingRow:
    row = cur.fetchone()
    if row is None:
        raise StorageError("the database returned no recording row")
    return _row(row)


def _row(row: tuple[Any, ...]) -> RecordingRow:
    (rid, tenant, session, key, status, kind, kid, wrapped, *rest) = row
    return RecordingRow(
        _as_uuid(rid),
        _as_uuid(tenant),
        _as_uuid(session),
        key,
        status,
        kind,
        kid,
        None if wrapped is None else bytes(wrapped),
        *rest,
    )


def _as_uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
