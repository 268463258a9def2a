"""``trace import``: load a call trace into this installation (another data dir or database).

What is written, in order (each step idempotent or refused before anything is written):

1. the tenant, by name (created if missing);
2. the agent, by name: the tenant's agent of that name if there is one, else a
   new agent made from the snapshot (with the trace's agent id when it is free
   here, and no phone numbers: an imported agent answers no calls);
3. the agent version (:func:`.agent_versions.put_version`, checked against its hash);
4. the session row (same session id, door, CallSid, numbers, status and times);
5. the events, as stored (``call_turns`` follow from them), and the ``call_logs`` row;
6. with audio, the recording: a fresh data key wrapped by *this* server's keyring,
   the tape re-sealed (:class:`~switchboard.codecs.recording_format.SegmentWriter`),
   stored as the session's object, its row made and finished.

A session already here is refused unless ``replace``: then its rows (events,
turns, call log, recording row and object, token uses, the session) are removed
first, through the owner's connection (``dsn``), since the application role may
delete none of them. A failure part way removes what the import wrote the same way.

Errors: :class:`~.trace_file.TraceError` (session already here; no snapshot and
no agent of that name), :class:`~.errors.StorageError`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from switchboard.codecs.recording_format import (
    RecordingHeader,
    SegmentWriter,
    TrackFormat,
    WrappedKey,
)

from .agent_versions import put_version
from .errors import StorageError
from .recording_keys import Keyring, new_data_key
from .recording_rows import FINISHED_STATUSES, NewRecording, create_recording, finish_recording
from .recording_store import RecordingStore, object_key
from .schema import pg_message
from .store import EventRow, Store
from .trace_export import session_tenant
from .trace_file import Trace, TraceError

__all__ = ["Imported", "forget_session", "import_trace"]

EVENT_BATCH = 500


@dataclass(frozen=True)
class Imported:
    """What :func:`import_trace` wrote."""

    tenant_id: UUID
    agent_id: UUID
    session_id: UUID
    events: int
    recording: bool
    replaced: bool


def import_trace(
    store: Store,
    recordings: RecordingStore,
    keyring: Keyring,
    trace: Trace,
    *,
    dsn: str,
    replace: bool = False,
) -> Imported:
    """Load ``trace`` (see the module docstring); ``dsn`` logs in as the schema's owner.

    Raises:
        TraceError: the session is here already (and not ``replace``); the trace has no
            agent snapshot and the tenant no agent of its name; a part is malformed.
        StorageError: PostgreSQL refused.
    """
    manifest = trace.manifest
    try:
        session_id = UUID(str(manifest["session_id"]))
        tenant_name = str(manifest["tenant"]["name"])
        agent_info = manifest.get("agent") or {}
    except (KeyError, TypeError, ValueError) as exc:
        raise TraceError(f"the manifest lacks the session or the tenant: {exc!r}") from exc
    replaced = False
    if session_tenant(store, session_id) is not None:
        if not replace:
            raise TraceError(
                f"session {session_id} is already here; --replace removes it and imports"
                " the trace in its place"
            )
        forget_session(dsn, session_id, recordings)
        replaced = True
    tenant_id = store.ensure_tenant(tenant_name)
    agent_id = _agent_for(store, tenant_id, trace, agent_info)
    try:
        version = agent_info.get("version")
        if trace.agent is not None and isinstance(version, str):
            put_version(store, tenant_id, agent_id, trace.agent, version)
        _insert_session(store, tenant_id, agent_id, session_id, trace.session.get("session") or {})
        events = [_event_row(e) for e in trace.events]
        for start in range(0, len(events), EVENT_BATCH):
            store.append_events(tenant_id, session_id, events[start : start + EVENT_BATCH])
        _insert_call_log(store, tenant_id, agent_id, session_id, trace.session.get("call_log"))
        recorded = trace.records is not None and "recording" in manifest
        if recorded:
            _reseal(store, recordings, keyring, tenant_id, session_id, trace)
    except BaseException:
        with contextlib.suppress(Exception):  # the first failure is the one to report
            forget_session(dsn, session_id, recordings)
        raise
    return Imported(tenant_id, agent_id, session_id, len(events), recorded, replaced)


def forget_session(dsn: str, session_id: UUID, recordings: RecordingStore) -> None:
    """Remove session ``session_id`` and everything of it (its agent versions stay), as
    the owner; then its recording object. Nothing to remove is no error."""
    tables = ("recordings", "call_turns", "call_events", "call_logs", "session_token_uses")
    try:
        with psycopg.connect(dsn) as conn:
            keys = [
                str(r[0])
                for r in conn.execute(
                    "SELECT object_key FROM recordings WHERE session_id = %s", (session_id,)
                ).fetchall()
            ]
            for table in tables:
                conn.execute(f"DELETE FROM {table} WHERE session_id = %s", (session_id,))
            conn.execute("DELETE FROM voice_sessions WHERE id = %s", (session_id,))
    except psycopg.Error as exc:
        raise StorageError(f"cannot remove session {session_id}: {pg_message(exc)}") from exc
    for key in keys:
        recordings.delete(key)


def _agent_for(store: Store, tenant_id: UUID, trace: Trace, info: dict[str, Any]) -> UUID:
    """The tenant's agent named like the trace's, made from the snapshot if missing."""
    name = info.get("name") or (trace.agent or {}).get("name")
    existing = store.agent_id_by_name(tenant_id, str(name)) if name else None
    if existing is not None:
        return existing
    if trace.agent is None or not name:
        raise TraceError(
            f"the trace holds no agent snapshot and tenant has no agent {name!r} to run it on"
        )
    spec = {**trace.agent, "phone_numbers": [], "number_modes": {}}  # answers no calls
    wanted = _uuid_or_none(info.get("id"))
    with store.db.tenant(tenant_id) as cur:
        cur.execute(
            "INSERT INTO agents (id, tenant_id, name, spec)"
            " VALUES (COALESCE(%s, gen_random_uuid()), %s, %s, %s)"
            " ON CONFLICT (id) DO NOTHING RETURNING id",
            (wanted, tenant_id, name, Jsonb(spec)),
        )
        row = cur.fetchone()
        if row is None:  # the id is another agent's here: a new one
            cur.execute(
                "INSERT INTO agents (tenant_id, name, spec) VALUES (%s, %s, %s) RETURNING id",
                (tenant_id, name, Jsonb(spec)),
            )
            row = cur.fetchone()
    assert row is not None
    return row[0] if isinstance(row[0], UUID) else UUID(str(row[0]))


def _insert_session(
    store: Store, tenant_id: UUID, agent_id: UUID, session_id: UUID, row: dict[str, Any]
) -> None:
    with store.db.tenant(tenant_id) as cur:
        cur.execute(
            "INSERT INTO voice_sessions (id, tenant_id, agent_id, transport, call_sid,"
            " stream_sid, from_number, to_number, status, created_at, started_at, ended_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, COALESCE(%s, now()), %s, %s)",
            (
                session_id,
                tenant_id,
                agent_id,
                row.get("transport"),
                row.get("call_sid"),
                row.get("stream_sid"),
                row.get("from_number"),
                row.get("to_number"),
                row.get("status") or "ended",
                row.get("created_at"),
                row.get("started_at"),
                row.get("ended_at"),
            ),
        )


def _insert_call_log(
    store: Store, tenant_id: UUID, agent_id: UUID, session_id: UUID, log: dict[str, Any] | None
) -> None:
    if not log:
        return
    with store.db.tenant(tenant_id) as cur:
        cur.execute(
            "INSERT INTO call_logs (session_id, tenant_id, agent_id, started_at, ended_at,"
            " duration_ms, turns, end_reason, summary) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                session_id,
                tenant_id,
                agent_id,
                log["started_at"],
                log["ended_at"],
                log["duration_ms"],
                log["turns"],
                log["end_reason"],
                Jsonb(log.get("summary") or {}),
            ),
        )


def _event_row(event: dict[str, Any]) -> EventRow:
    try:
        return EventRow(
            int(event["seq"]),
            str(event["type"]),
            datetime.fromisoformat(str(event["ts"])),
            float(event["t_ms"]),
            dict(event.get("payload") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TraceError(f"event {event.get('seq')!r} of the trace is malformed: {exc}") from exc


def _reseal(
    store: Store,
    recordings: RecordingStore,
    keyring: Keyring,
    tenant_id: UUID,
    session_id: UUID,
    trace: Trace,
) -> None:
    """Seal the trace's tape under a fresh data key wrapped by ``keyring``; store it and its row."""
    assert trace.records is not None
    info = trace.manifest["recording"]
    caller, agent = info["caller"], info["agent"]
    data_key = new_data_key()
    kid, wrapped = keyring.wrap(data_key)
    header = RecordingHeader(
        session_id=str(session_id),
        tenant_id=str(tenant_id),
        caller=TrackFormat(encoding=caller["encoding"], sample_rate=caller["sample_rate"]),
        agent=TrackFormat(encoding=agent["encoding"], sample_rate=agent["sample_rate"]),
        started_at=info.get("started_at") or info["created_at"],
        key=WrappedKey(kind="keyring", kid=kid),
    )
    writer = SegmentWriter(data_key, header)
    sealed = writer.start() + writer.seal(trace.records, last=True)
    key = object_key(tenant_id, session_id)
    expires, created = info.get("expires_at"), info.get("created_at")
    retention_days = None
    if expires and created:
        days = (datetime.fromisoformat(expires) - datetime.fromisoformat(created)).days
        retention_days = max(1, days)
    create_recording(
        store,
        NewRecording(
            tenant_id=tenant_id,
            session_id=session_id,
            object_key=key,
            key_kind="keyring",
            kid=kid,
            wrapped_key=wrapped,
            caller_encoding=caller["encoding"],
            caller_sample_rate=caller["sample_rate"],
            agent_encoding=agent["encoding"],
            agent_sample_rate=agent["sample_rate"],
            retention_days=retention_days,
        ),
    )
    fd, name = tempfile.mkstemp(prefix="switchboard-trace-", suffix=".sbrec")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(sealed)
        recordings.put_file(key, Path(name))
    finally:
        Path(name).unlink(missing_ok=True)
    status = info.get("status") if info.get("status") in FINISHED_STATUSES else "complete"
    duration = info.get("duration_ms")
    if duration is None:
        duration = round(max((r.t_ms for r in trace.records), default=0.0))
    finish_recording(
        store, tenant_id, session_id, status=status, size_bytes=len(sealed), duration_ms=duration
    )


def _uuid_or_none(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None
