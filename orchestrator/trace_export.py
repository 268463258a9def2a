"""``trace export``: gather one call from PostgreSQL and the recording store into a :class:`Trace`.

What is read (all synchronous and blocking, like :class:`~.store.Store`):

* the session's tenant, by ``switchboard_session_tenant`` (schema version 5);
* the ``voice_sessions`` row, the tenant's name, the ``call_logs`` row;
* the call's events in ``seq`` order, and the agent version ``session.start``
  names (:mod:`.agent_versions`);
* the recording, if any (:mod:`.recording_rows`, :mod:`.recording_store`): its
  data key unwrapped by the server keyring (or, for a tenant's RSA key, by the
  private key given), its records decrypted
  (:func:`~switchboard.codecs.recording_format.read_records`).

The trace holds the audio **decrypted**: it is for the engineer who replays
the call, and the manifest says so (``"audio": "decrypted"``). Without audio
(``audio=False``), or when the call was not recorded, the tape is left out and
the manifest says which.

Errors: :class:`~.trace_file.TraceError` (no such session; a recording that
cannot be read or decrypted, with the reason), :class:`~.errors.StorageError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from switchboard.codecs.recording_format import RecordingCorrupt, read_header, read_records

from .agent_versions import get_version
from .errors import StorageError
from .recording_keys import Keyring, RecordingKeyError, unwrap_rsa
from .recording_rows import RecordingRow, get_recording
from .recording_store import RecordingStore, RecordingStoreError
from .store import Store
from .trace_file import Trace, TraceError, tool_results

__all__ = ["AUDIO_NOTE", "export_trace", "session_tenant"]

AUDIO_NOTE = "the audio in this trace is decrypted: keep the file as you would keep the recording"
_SESSION_COLUMNS = (
    "agent_id",
    "transport",
    "call_sid",
    "stream_sid",
    "from_number",
    "to_number",
    "status",
    "created_at",
    "started_at",
    "ended_at",
)
_LOG_COLUMNS = (
    "agent_id",
    "started_at",
    "ended_at",
    "duration_ms",
    "turns",
    "end_reason",
    "summary",
)


def session_tenant(store: Store, session_id: UUID) -> UUID | None:
    """The tenant whose session ``session_id`` is, or None."""
    with store.db.anonymous() as cur:
        cur.execute("SELECT switchboard_session_tenant(%s)", (session_id,))
        row = cur.fetchone()
    if row is None or row[0] is None:
        return None
    return row[0] if isinstance(row[0], UUID) else UUID(str(row[0]))


def export_trace(
    store: Store,
    recordings: RecordingStore,
    keyring: Keyring,
    session_id: UUID,
    *,
    audio: bool = True,
    private_key: bytes | None = None,
) -> Trace:
    """The trace of call ``session_id`` (see the module docstring).

    Args:
        recordings: the store the recording's object is in.
        keyring: the server keyring (unwraps keyring-wrapped data keys).
        audio: False leaves the tape out (``"audio": "left out"``).
        private_key: the tenant's RSA private key (PEM), for a recording sealed for it.

    Raises:
        TraceError: no such session; its recording cannot be read or decrypted.
    """
    tenant_id = session_tenant(store, session_id)
    if tenant_id is None:
        raise TraceError(f"no session {session_id} in this installation")
    with store.db.tenant(tenant_id) as cur:
        cur.execute(
            f"SELECT {', '.join(_SESSION_COLUMNS)} FROM voice_sessions WHERE id = %s", (session_id,)
        )
        session_row = cur.fetchone()
        cur.execute("SELECT name FROM tenants WHERE id = %s", (tenant_id,))
        tenant_row = cur.fetchone()
        cur.execute(
            f"SELECT {', '.join(_LOG_COLUMNS)} FROM call_logs WHERE session_id = %s", (session_id,)
        )
        log_row = cur.fetchone()
    if session_row is None or tenant_row is None:
        raise StorageError(f"session {session_id} vanished while it was exported")
    session = _jsonable(dict(zip(_SESSION_COLUMNS, session_row, strict=True)))
    call_log = None if log_row is None else _jsonable(dict(zip(_LOG_COLUMNS, log_row, strict=True)))
    events = store.read_events(tenant_id, session_id)
    start: dict[str, Any] = next((e["payload"] for e in events if e["type"] == "session.start"), {})
    version = start.get("agent_version")
    kept = get_version(store, tenant_id, version) if isinstance(version, str) else None
    agent = dict(kept.spec) if kept is not None else None
    manifest: dict[str, Any] = {
        "session_id": str(session_id),
        "tenant": {"id": str(tenant_id), "name": tenant_row[0]},
        "agent": {
            "id": session["agent_id"],
            "name": start.get("agent") or (agent or {}).get("name"),
            "version": version,
            "snapshot": "present" if agent is not None else "not kept",
        },
        "door": session["transport"],
        "caller_format": start.get("caller_format"),
        "created": datetime.now(UTC).isoformat(),
    }
    trace = Trace(
        manifest,
        {"session": session, "call_log": call_log},
        events,
        agent,
        tools=tool_results(events),
    )
    row = get_recording(store, tenant_id, session_id)
    _add_recording(trace, row, recordings, keyring, audio=audio, private_key=private_key)
    return trace


def _add_recording(
    trace: Trace,
    row: RecordingRow | None,
    recordings: RecordingStore,
    keyring: Keyring,
    *,
    audio: bool,
    private_key: bytes | None,
) -> None:
    """Put the recording's records on ``trace`` and say in its manifest what was done."""
    manifest = trace.manifest
    if row is None:
        manifest["audio"] = "not recorded"
        return
    manifest["recording"] = {
        "status": row.status,
        "key_kind": row.key_kind,
        "caller": {"encoding": row.caller_encoding, "sample_rate": row.caller_sample_rate},
        "agent": {"encoding": row.agent_encoding, "sample_rate": row.agent_sample_rate},
        "duration_ms": row.duration_ms,
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
    }
    if row.status == "deleted" or row.wrapped_key is None:
        manifest["audio"] = "not recorded: the recording was deleted"
        return
    if not audio:
        manifest["audio"] = "left out"
        return
    try:
        blob = recordings.get(row.object_key)
        header = read_header(blob)
        if row.key_kind == "rsa":
            if private_key is None:
                raise TraceError(
                    "the recording is sealed for the tenant's RSA key: pass its private key"
                    " (--key private.pem), or --no-audio"
                )
            wrapped = header.key.wrapped or row.wrapped_key
            data_key = unwrap_rsa(private_key, wrapped)
        else:
            data_key = keyring.unwrap(row.kid, row.wrapped_key)
        header, records = read_records(blob, data_key, allow_truncated=row.status != "complete")
    except (RecordingStoreError, RecordingKeyError, RecordingCorrupt, ValueError) as exc:
        raise TraceError(f"the recording of this call cannot be read: {exc}") from exc
    manifest["recording"]["started_at"] = header.started_at
    manifest["audio"] = "decrypted"
    manifest["audio_note"] = AUDIO_NOTE
    trace.records = records


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with UUIDs and times as text (ISO 8601)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[key] = value
    return out
