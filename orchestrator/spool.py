"""Draining call journals back into PostgreSQL, and recovering what a crash left.

The spool folder holds the journals of calls (:mod:`.journal`): those running
now (locked by their process), those that ended while PostgreSQL was away, and
those whose process died (SIGKILL, OOM, power). ``drain`` takes every journal it
can lock and writes it to PostgreSQL:

* its events, with ``Store.append_events`` (idempotent on ``(session_id, seq)``,
  so a journal drained twice, or partly written before, never duplicates);
* its end, with ``Store.finish_session`` (idempotent too);
* a journal with no end is a call its process lost: unless its last event is
  ``session.end``, a ``session.end`` with reason ``server lost`` is appended
  (next ``seq``, the last event's clock), and the session is closed with that
  reason and the turns its ``response.done`` events counted.

A journal is deleted only once all of it is in. A spool file of an earlier
release (events only, no header) is written back the same way. The server
drains at start (before it takes calls: this is crash recovery) and then every
``interval_s``; with ``--workers`` the parent drains for all of them.
"""

from __future__ import annotations

import fcntl
import os
from datetime import datetime
from pathlib import Path
from typing import Final

import structlog
import trio

from .journal import CallEnd, JournalContents, read_journal
from .store import EventRow, Store

__all__ = ["SERVER_LOST", "drain", "drain_once", "keep_draining"]

log = structlog.get_logger("switchboard.spool")

SERVER_LOST: Final = "server lost"
"""The end reason of a call whose server process died before the call ended."""

BATCH_ROWS: Final = 500


def drain(store: Store, spool_dir: Path) -> int:
    """Write every journal no live call holds; return the rows written (sync, blocking).

    Raises:
        StorageError: PostgreSQL failed; the journal being written stays for the next drain.
    """
    written = 0
    if not spool_dir.is_dir():
        return 0
    for path in sorted(spool_dir.glob("*.jsonl")):
        written += _drain_one(store, path)
    return written


def _drain_one(store: Store, path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0  # its call just ended and wrote everything
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # a live call's journal
        if os.fstat(fd).st_nlink == 0:
            return 0  # another drainer wrote and deleted it while this one waited
        try:
            contents = read_journal(path)
        except (OSError, ValueError) as exc:
            log.error("unreadable journal left in place", path=str(path), error=repr(exc))
            return 0
        written = _write(store, contents)
        path.unlink()
        log.info("journal written back", path=str(path), rows=written)
        return written
    finally:
        os.close(fd)


def _write(store: Store, contents: JournalContents) -> int:
    session = contents.session
    events = contents.events
    end = contents.end
    if session is not None and end is None:
        rows = events.get(session, [])
        lost, end = _lost_call(contents, rows)
        if lost is not None:
            events.setdefault(session, []).append(lost)
        log.warning("call lost by its server: closed", session_id=str(session[1]), events=len(rows))
    written = 0
    for (tenant_id, session_id), rows in events.items():
        for i in range(0, len(rows), BATCH_ROWS):
            store.append_events(tenant_id, session_id, rows[i : i + BATCH_ROWS])
        written += len(rows)
    if session is not None and end is not None:
        store.finish_session(
            session[0],
            session[1],
            end_reason=end.end_reason,
            turns=end.turns,
            started_at=end.started_at,
            ended_at=end.ended_at,
        )
    return written


def _lost_call(contents: JournalContents, rows: list[EventRow]) -> tuple[EventRow | None, CallEnd]:
    """The ``session.end`` event (None if the call logged its own) and the end of a call
    whose process died."""
    assert contents.header is not None
    started_at = datetime.fromisoformat(contents.header["started_at"])
    turns = max(
        (int(r.payload.get("turns_completed", 0)) for r in rows if r.type == "response.done"),
        default=0,
    )
    last = rows[-1] if rows else None
    ended_at = last.ts if last is not None else started_at
    logged_end = next((r for r in reversed(rows) if r.type == "session.end"), None)
    if logged_end is not None:
        reason = str(logged_end.payload.get("reason", SERVER_LOST))
        return None, CallEnd(reason, turns, started_at, ended_at)
    duration_ms = last.t_ms if last is not None else 0.0
    lost = EventRow(
        seq=(last.seq if last is not None else 0) + 1,
        type="session.end",
        ts=ended_at,
        t_ms=duration_ms,
        payload={"reason": SERVER_LOST, "turns_completed": turns, "duration_ms": duration_ms},
    )
    return lost, CallEnd(SERVER_LOST, turns, started_at, ended_at)


async def keep_draining(store: Store, spool_dir: Path, interval_s: float = 30.0) -> None:
    """Drain now and then every ``interval_s`` seconds, for as long as the server runs."""
    while True:
        await drain_once(store, spool_dir)
        await trio.sleep(interval_s)


async def drain_once(store: Store, spool_dir: Path) -> bool:
    """One drain in a worker thread; False (logged) if PostgreSQL failed."""
    try:
        await trio.to_thread.run_sync(drain, store, spool_dir)
    except Exception as exc:  # PostgreSQL still away: try again later
        log.warning("spool not drained yet", error=repr(exc))
        return False
    return True
