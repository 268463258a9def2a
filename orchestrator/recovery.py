"""What a server recovers when it starts: the calls a crash left open.

Run by the server instance (the parent, with ``--workers``) after the schema
is migrated and before it takes a call, in this order:

1. the journals in the spool folder are written back (:func:`.spool.drain`):
   calls that ended with PostgreSQL away get their events and end, calls whose
   process died are closed as ``server lost``;
2. sessions this instance took (``voice_sessions.owner``) that are still
   ``active`` and have no journal left are closed as ``server lost`` with their
   ``call_logs`` row (the process died between admitting the call and writing
   its first event, or its journal was lost with the disk);
3. ``pending`` sessions whose admission expired become ``failed``
   (:func:`expire_admissions`, also run by every drain).

The instance id (:func:`instance_id`) is ``INSTANCE_ID`` if set (for example
the pod name of a StatefulSet), else a random id kept in the data folder, so a
restart on the same folder is the same instance.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from uuid import UUID

import structlog
import trio

from .errors import ConfigError
from .spool import SERVER_LOST, drain, drain_once
from .store import EventRow, Store

__all__ = [
    "INSTANCE_ID_ENV",
    "RecoveryReport",
    "expire_admissions",
    "instance_id",
    "keep_recovering",
    "recover",
]

log = structlog.get_logger("switchboard.recovery")

INSTANCE_ID_ENV: Final = "INSTANCE_ID"
_INSTANCE_FILE: Final = "instance_id"


def instance_id(data_dir: Path) -> str:
    """This server instance's id: ``$INSTANCE_ID``, else the one kept in ``data_dir``
    (made at first start: ``sb-`` and 16 hex digits).

    Raises:
        ConfigError: ``INSTANCE_ID`` is set but empty or longer than 200 characters.
    """
    given = os.environ.get(INSTANCE_ID_ENV)
    if given is not None:
        if not given.strip() or len(given) > 200:
            raise ConfigError(f"{INSTANCE_ID_ENV} must be 1 to 200 characters, got {given!r:.60}")
        return given.strip()
    path = data_dir / _INSTANCE_FILE
    try:
        return path.read_text("utf-8").strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.new")
    temporary.write_text(f"sb-{secrets.token_hex(8)}\n", "utf-8")
    try:
        os.link(temporary, path)  # first writer wins; the others read its id
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text("utf-8").strip()


def expire_admissions(store: Store) -> int:
    """Fail the ``pending`` sessions whose admission expired; return how many (sync).

    Raises:
        StorageError: PostgreSQL failed.
    """
    with store.db.anonymous() as cur:
        cur.execute("SELECT switchboard_expire_admissions()")
        row = cur.fetchone()
    return int(row[0]) if row is not None else 0


@dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover` did: event rows written back from journals, sessions closed
    as ``server lost`` without a journal, admissions expired."""

    rows: int
    closed: int
    expired: int


def _log_lost_end(store: Store, tenant_id: UUID, session_id: UUID) -> None:
    """Append ``session.end`` (reason ``server lost``) after the session's last event."""
    events = store.read_events(tenant_id, session_id)
    last = events[-1] if events else None
    if last is not None and last["type"] == "session.end":
        return
    t_ms = float(last["t_ms"]) if last is not None else 0.0
    end = EventRow(
        seq=(int(last["seq"]) if last is not None else 0) + 1,
        type="session.end",
        ts=datetime.now(UTC),
        t_ms=t_ms,
        payload={"reason": SERVER_LOST, "turns_completed": 0, "duration_ms": t_ms},
    )
    store.append_events(tenant_id, session_id, [end])


def recover(store: Store, spool_dir: Path, owner: str) -> RecoveryReport:
    """Recover what a crash of instance ``owner`` left (sync; see the module docstring).

    Only call it before the instance takes calls: every session ``owner`` has
    ``active`` is taken for one a crash left.

    Raises:
        StorageError: PostgreSQL failed; run it again.
    """
    rows = drain(store, spool_dir)
    journaled = {p.stem for p in spool_dir.glob("*.jsonl")} if spool_dir.is_dir() else set()
    with store.db.anonymous() as cur:
        cur.execute("SELECT * FROM switchboard_lost_sessions(%s)", (owner,))
        lost = cur.fetchall()
    closed = 0
    for tenant_id, session_id, started_at in lost:
        if str(session_id) in journaled:
            continue  # its journal could not be read: it keeps its own end
        _log_lost_end(store, tenant_id, session_id)
        store.finish_session(
            tenant_id,
            session_id,
            end_reason=SERVER_LOST,
            turns=0,
            started_at=started_at,
            ended_at=max(started_at, datetime.now(UTC)),
        )
        closed += 1
        log.warning("call lost by its server: closed", session_id=str(session_id))
    expired = expire_admissions(store)
    if rows or closed or expired:
        log.info("recovered", rows=rows, sessions_closed=closed, admissions_expired=expired)
    return RecoveryReport(rows, closed, expired)


async def keep_recovering(store: Store, spool_dir: Path, interval_s: float = 30.0) -> None:
    """Every ``interval_s`` seconds, for as long as the server runs: drain the journals
    (:func:`.spool.drain_once`) and expire admissions. The first round is at once."""
    while True:
        if await drain_once(store, spool_dir):
            try:
                await trio.to_thread.run_sync(expire_admissions, store)
            except Exception as exc:
                log.warning("admissions not expired yet", error=repr(exc))
        await trio.sleep(interval_s)
