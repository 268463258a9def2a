"""Draining the event spool back into PostgreSQL.

A call's event logger spools the events it could not write (PostgreSQL away
at the end of the call) to ``SPOOL_DIR/<session_id>.jsonl``. ``drain`` writes
each file back with ``Store.append_events``, which is idempotent on
``(session_id, seq)``, so a file drained twice, or partly written before,
never duplicates an event; a file is deleted only once all its rows are in.
The server drains at start and then every ``interval_s``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from uuid import UUID

import structlog
import trio

from .store import EventRow, Store

log = structlog.get_logger("switchboard.spool")


def drain(store: Store, spool_dir: Path) -> int:
    """Write every spooled event back; return how many rows were written (sync)."""
    written = 0
    if not spool_dir.is_dir():
        return 0
    for path in sorted(spool_dir.glob("*.jsonl")):
        batches: dict[tuple[UUID, UUID], list[EventRow]] = defaultdict(list)
        try:
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                batches[(UUID(row["tenant_id"]), UUID(row["session_id"]))].append(
                    EventRow(
                        seq=row["seq"],
                        type=row["type"],
                        ts=datetime.fromisoformat(row["ts"]),
                        t_ms=row["t_ms"],
                        payload=row["payload"],
                    )
                )
        except (ValueError, KeyError, TypeError) as exc:
            log.error("unreadable spool file left in place", path=str(path), error=repr(exc))
            continue
        for (tenant_id, session_id), rows in batches.items():
            store.append_events(tenant_id, session_id, rows)
            written += len(rows)
        path.unlink()
        log.info("spooled events written back", path=str(path))
    return written


async def keep_draining(store: Store, spool_dir: Path, interval_s: float = 30.0) -> None:
    """Drain now and then every ``interval_s`` seconds, for as long as the server runs."""
    while True:
        try:
            await trio.to_thread.run_sync(drain, store, spool_dir)
        except Exception as exc:  # PostgreSQL still away: try again later
            log.warning("spool not drained yet", error=repr(exc))
        await trio.sleep(interval_s)
