"""A tenant's calls as the API lists them: ``GET /v1/calls`` and ``GET /v1/calls/{id}``.

One call is its ``voice_sessions`` row, its agent's name and, once it ended, its
``call_logs`` row (turns, end reason, duration, summary). Read under the
tenant's row-level security, so another tenant's call is simply not found.

Synchronous and blocking like :class:`~.store.Store` (run with
``trio.to_thread.run_sync``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

from .db import Database

__all__ = ["MAX_PAGE", "get_call", "list_calls"]

MAX_PAGE: Final = 200
"""The most calls one page lists (``limit``)."""

_SELECT: Final = (
    "SELECT s.id, s.transport, s.status, s.call_sid, s.from_number, s.to_number,"
    " s.created_at, s.started_at, s.ended_at, a.id, a.name,"
    " l.duration_ms, l.turns, l.end_reason, l.summary"
    " FROM voice_sessions AS s"
    " JOIN agents AS a ON a.tenant_id = s.tenant_id AND a.id = s.agent_id"
    " LEFT JOIN call_logs AS l ON l.tenant_id = s.tenant_id AND l.session_id = s.id"
)


def list_calls(
    db: Database,
    tenant_id: UUID,
    *,
    limit: int = 50,
    before: datetime | None = None,
    before_id: UUID | None = None,
    agent: str | None = None,
) -> list[dict[str, Any]]:
    """The tenant's calls, newest first (then by id, descending): at most ``limit``
    (1..:data:`MAX_PAGE`), after the position ``(before, before_id)`` in that order (the
    previous page's last call; without ``before_id``, every call made before ``before``),
    of agent ``agent``. Keyset paging: two calls made in the same microsecond are never
    split or repeated across pages.

    Raises:
        ValueError: ``limit`` out of range.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
    where: list[str] = ["TRUE"]
    args: list[object] = []
    if before is not None and before_id is not None:
        where.append("(s.created_at, s.id) < (%s, %s)")
        args += [before, before_id]
    elif before is not None:
        where.append("s.created_at < %s")
        args.append(before)
    if agent is not None:
        where.append("a.name = %s")
        args.append(agent)
    with db.tenant(tenant_id) as cur:
        cur.execute(
            f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY s.created_at DESC, s.id DESC LIMIT %s",
            (*args, limit),
        )
        return [_call(row) for row in cur.fetchall()]


def get_call(db: Database, tenant_id: UUID, session_id: UUID) -> dict[str, Any] | None:
    """The call ``session_id`` with its summary, or None (unknown, or another tenant's)."""
    with db.tenant(tenant_id) as cur:
        cur.execute(f"{_SELECT} WHERE s.id = %s", (session_id,))
        row = cur.fetchone()
    return None if row is None else _call(row)


def _call(row: tuple[Any, ...]) -> dict[str, Any]:
    (sid, transport, status, call_sid, from_number, to_number, created, started, ended) = row[:9]
    agent_id, agent, duration_ms, turns, end_reason, summary = row[9:]
    return {
        "session_id": str(sid),
        "door": transport,
        "status": status,
        "agent": {"id": str(agent_id), "name": agent},
        "call_sid": call_sid,
        "from": from_number,
        "to": to_number,
        "created_at": _iso(created),
        "started_at": _iso(started),
        "ended_at": _iso(ended),
        "duration_ms": duration_ms,
        "turns": turns,
        "end_reason": end_reason,
        "summary": summary if summary is not None else None,
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
