"""The post-call queue and the webhook outbox in PostgreSQL (migration 0008).

Rows and their states (``orchestrator/migrations/0008_post_call.sql``):

- ``post_call_jobs``: one per ended call, ``pending`` -> ``running`` (leased) ->
  ``done`` | ``failed``;
- ``webhook_outbox``: one per event and subscribed webhook, ``pending`` ->
  ``delivered`` | ``dead``; its ``id`` is the ``webhook-id`` header
  (``msg_`` and 32 hex digits, :func:`message_id`), the same on every attempt.

Queueing happens inside the transaction that makes the fact true
(:func:`queue_call_ended` in :meth:`.store.Store.finish_session`,
:func:`store_analysis` with the summary), so a call's webhooks exist if and only
if its end (or analysis) is stored: the transactional outbox pattern.

Claims cross tenants through the SECURITY DEFINER functions of 0008
(``FOR UPDATE SKIP LOCKED`` and a lease): no two takers get one row, and a
taker that died gives its rows back when the lease ends. Everything else goes
through the tenant's own door.

Synchronous and blocking like :class:`~.store.Store` (``trio.to_thread.run_sync``).
Errors: :class:`~.errors.StorageError` from the database layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, final
from uuid import UUID, uuid5

from psycopg.types.json import Jsonb

from .db import Cursor, Database

__all__ = [
    "EVENT_TYPES",
    "OUTBOX_STATES",
    "Delivery",
    "OutboxRow",
    "call_data",
    "claim_jobs",
    "claim_webhooks",
    "delivery",
    "event_body",
    "fail_job",
    "list_outbox",
    "mark_attempt",
    "message_id",
    "outbox_depth",
    "queue_call_ended",
    "retry_outbox",
    "store_analysis",
]

EVENT_TYPES: Final = ("call.ended", "call.analyzed")
"""The events a webhook may subscribe to."""
OUTBOX_STATES: Final = ("pending", "delivered", "dead")
JOB_MAX_ATTEMPTS: Final = 3
"""A post-call job that failed this many times stays ``failed``."""


def message_id(subscription_id: UUID, session_id: UUID, event_type: str) -> str:
    """The ``webhook-id`` of one event for one subscription: ``msg_`` and 32 hex digits,
    a UUIDv5 of the three, so queueing it twice makes one row."""
    return "msg_" + uuid5(subscription_id, f"{session_id}/{event_type}").hex


def event_body(event_type: str, data: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """The JSON body of an event, as Standard Webhooks suggests:
    ``{"type": str, "timestamp": ISO 8601 UTC, "data": {...}}``."""
    return {"type": event_type, "timestamp": at.astimezone(UTC).isoformat(), "data": dict(data)}


def _queue(cur: Cursor, tenant_id: UUID, session_id: UUID, event_type: str, body: Any) -> int:
    cur.execute(
        "SELECT id FROM webhook_subscriptions"
        " WHERE tenant_id = %s AND enabled AND %s = ANY (event_types) ORDER BY created_at",
        (tenant_id, event_type),
    )
    subscriptions = [row[0] for row in cur.fetchall()]
    for sub in subscriptions:
        cur.execute(
            "INSERT INTO webhook_outbox (id, tenant_id, subscription_id, session_id, event_type,"
            " payload) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                message_id(sub, session_id, event_type),
                tenant_id,
                sub,
                session_id,
                event_type,
                Jsonb(body),
            ),
        )
    return len(subscriptions)


def queue_call_ended(
    cur: Cursor, tenant_id: UUID, session_id: UUID, call: Mapping[str, Any]
) -> None:
    """In the caller's transaction (tenant door): the call's post-call job and one
    ``call.ended`` outbox row per enabled subscription of the tenant.

    Args:
        call: the event's ``data`` (JSON values: ids and times as strings).
    """
    cur.execute(
        "INSERT INTO post_call_jobs (session_id, tenant_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (session_id, tenant_id),
    )
    _queue(cur, tenant_id, session_id, "call.ended", event_body("call.ended", call, _now()))


def store_analysis(
    db: Database, tenant_id: UUID, session_id: UUID, summary: Mapping[str, Any]
) -> None:
    """One transaction: ``summary`` merged into ``call_logs.summary`` (its keys win over
    what the end of the call wrote there), the job ``done``, and a
    ``call.analyzed`` outbox row (data: the call and its ``summary``) per subscription."""
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "UPDATE call_logs SET summary = summary || %s WHERE session_id = %s"
            " RETURNING agent_id, started_at, ended_at, duration_ms, turns, end_reason",
            (Jsonb(dict(summary)), session_id),
        )
        row = cur.fetchone()
        cur.execute(
            "UPDATE post_call_jobs SET state = 'done', lease_until = NULL, error = NULL,"
            " updated_at = now() WHERE session_id = %s",
            (session_id,),
        )
        if row is None:
            return
        data = call_data(session_id, *row)
        data["summary"] = dict(summary)
        _queue(
            cur, tenant_id, session_id, "call.analyzed", event_body("call.analyzed", data, _now())
        )


def call_data(
    session_id: UUID,
    agent_id: UUID,
    started_at: datetime,
    ended_at: datetime,
    duration_ms: int,
    turns: int,
    end_reason: str,
) -> dict[str, Any]:
    """A ``call_logs`` row as an event's ``data``."""
    return {
        "call_id": str(session_id),
        "agent_id": str(agent_id),
        "started_at": started_at.astimezone(UTC).isoformat(),
        "ended_at": ended_at.astimezone(UTC).isoformat(),
        "duration_ms": duration_ms,
        "turns": turns,
        "end_reason": end_reason,
    }


def fail_job(db: Database, tenant_id: UUID, session_id: UUID, attempts: int, error: str) -> None:
    """The job's analysis raised: back to ``pending`` (or ``failed`` after
    :data:`JOB_MAX_ATTEMPTS` attempts), with the error."""
    state = "failed" if attempts >= JOB_MAX_ATTEMPTS else "pending"
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "UPDATE post_call_jobs SET state = %s, lease_until = NULL, error = %s,"
            " updated_at = now() WHERE session_id = %s",
            (state, error[:1000], session_id),
        )


def claim_jobs(db: Database, lease_s: float, limit: int = 4) -> list[tuple[UUID, UUID, int]]:
    """Take up to ``limit`` post-call jobs, leased ``lease_s`` seconds:
    ``(tenant_id, session_id, attempts)`` each."""
    with db.anonymous() as cur:
        cur.execute("SELECT * FROM switchboard_claim_post_call_jobs(%s, %s)", (lease_s, limit))
        return [(t, s, int(a)) for t, s, a in cur.fetchall()]


def claim_webhooks(db: Database, lease_s: float, limit: int = 16) -> list[tuple[UUID, str]]:
    """Take up to ``limit`` due outbox rows, leased ``lease_s`` seconds:
    ``(tenant_id, message id)`` each."""
    with db.anonymous() as cur:
        cur.execute("SELECT * FROM switchboard_claim_webhooks(%s, %s)", (lease_s, limit))
        return [(t, str(i)) for t, i in cur.fetchall()]


@final
@dataclass(frozen=True)
class Delivery:
    """What one attempt needs: where, signed with what, which body; ``attempts`` so far."""

    message_id: str
    url: str
    secret: str
    event_type: str
    payload: dict[str, Any]
    attempts: int


def delivery(db: Database, tenant_id: UUID, msg_id: str) -> Delivery | None:
    """The pending outbox row ``msg_id`` with its subscription, or None (gone, or no
    longer pending; a disabled subscription's rows are left as they are)."""
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "SELECT o.id, s.url, s.secret, o.event_type, o.payload, o.attempts"
            " FROM webhook_outbox o JOIN webhook_subscriptions s ON s.id = o.subscription_id"
            " WHERE o.id = %s AND o.state = 'pending' AND s.enabled",
            (msg_id,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    return Delivery(str(row[0]), str(row[1]), str(row[2]), str(row[3]), row[4], int(row[5]))


def mark_attempt(
    db: Database,
    tenant_id: UUID,
    msg_id: str,
    *,
    delivered: bool,
    status: int | None,
    error: str | None,
    retry_in_s: float | None,
) -> str:
    """Record one attempt and release the lease; returns the row's new state:
    ``delivered``, ``pending`` (again in ``retry_in_s`` seconds) or ``dead``
    (``retry_in_s`` None and not delivered)."""
    state = "delivered" if delivered else ("pending" if retry_in_s is not None else "dead")
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "UPDATE webhook_outbox SET state = %s, attempts = attempts + 1, lease_until = NULL,"
            " last_status = %s, last_error = %s,"
            " next_attempt_at = now() + make_interval(secs => %s),"
            " delivered_at = CASE WHEN %s THEN now() END WHERE id = %s",
            (state, status, (error or "")[:1000] or None, retry_in_s or 0.0, delivered, msg_id),
        )
    return state


@final
@dataclass(frozen=True)
class OutboxRow:
    """A delivery as ``switchboard tenant webhooks NAME deliveries`` lists it."""

    message_id: str
    subscription_id: UUID
    session_id: UUID
    event_type: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


def list_outbox(
    db: Database, tenant_id: UUID, *, state: str | None = None, limit: int = 100
) -> list[OutboxRow]:
    """The tenant's latest outbox rows (newest first), optionally of one state."""
    if state is not None and state not in OUTBOX_STATES:
        raise ValueError(f"state must be one of {OUTBOX_STATES}, got {state!r}")
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "SELECT id, subscription_id, session_id, event_type, state, attempts,"
            " next_attempt_at, last_status, last_error, delivered_at FROM webhook_outbox"
            " WHERE %(state)s::text IS NULL OR state = %(state)s"
            " ORDER BY created_at DESC, id LIMIT %(limit)s",
            {"state": state, "limit": limit},
        )
        return [OutboxRow(*row) for row in cur.fetchall()]


def retry_outbox(db: Database, tenant_id: UUID, msg_id: str) -> bool:
    """Make a ``dead`` (or pending) row due now with a fresh count of attempts;
    False if the tenant has no such row or it was delivered."""
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_attempt_at = now(),"
            " lease_until = NULL WHERE id = %s AND state <> 'delivered'",
            (msg_id,),
        )
        return cur.rowcount == 1


def outbox_depth(db: Database) -> dict[str, int]:
    """Outbox rows by state, every tenant: ``{"pending": n, "delivered": n, "dead": n}``."""
    with db.anonymous() as cur:
        cur.execute("SELECT state, n FROM switchboard_outbox_depth()")
        found = {str(s): int(n) for s, n in cur.fetchall()}
    return {state: found.get(state, 0) for state in OUTBOX_STATES}


def _now() -> datetime:
    return datetime.now(UTC)
