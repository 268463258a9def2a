"""Shared by the post-call tests: an agent with analysis criteria, a call as the runtime
records it (events, turns, its end), and waiting on PostgreSQL for a state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import trio

from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.store import EventRow, Store

AGENT = """\
name: front
tenant: {tenant}
greeting: Hello, Bright Smile Dental.
intents:
  - name: hours
    phrases: [when are you open]
    reply: We are open nine to five.
  - name: booking
    phrases: [book a visit]
    reply: I have booked you in.
analysis:
  criteria:
    - name: hours_answered
      description: The caller learned the opening hours.
      intent: hours
    - name: booked
      description: The caller booked a visit.
      intent: booking
      weight: 3
"""

CALLER_LINES = ("When are you open? Thanks, great.", "Bye.")


def ended_call(
    store: Store, tenant: str = "bakery", *, end_reason: str = "caller hung up"
) -> tuple[UUID, UUID]:
    """A browser call of ``tenant``'s agent ``front`` that asked for the hours, as the
    event logger and the end of the call write it; ``(tenant_id, session_id)``."""
    agent_id = store.apply_agent(parse_agent_yaml(AGENT.format(tenant=tenant)))
    tenant_id = store.ensure_tenant(tenant)
    session_id = store.create_session(tenant_id, agent_id, transport="browser")
    start = datetime.now(UTC)
    events: list[tuple[str, dict[str, Any]]] = [
        ("session.start", {"provider": "local"}),
        ("turn:agent", {"text": "Hello, Bright Smile Dental."}),
        ("turn:user", {"text": CALLER_LINES[0], "intent": "hours"}),
        ("tool:call", {"call_id": "c1", "name": "lookup_hours", "arguments": {}}),
        ("turn:agent", {"text": "We are open nine to five."}),
        ("turn:user", {"text": CALLER_LINES[1]}),
    ]
    store.append_events(
        tenant_id,
        session_id,
        [
            EventRow(seq, type_, start + timedelta(seconds=seq), seq * 1000.0, payload)
            for seq, (type_, payload) in enumerate(events)
        ],
    )
    store.finish_session(
        tenant_id,
        session_id,
        end_reason=end_reason,
        turns=2,
        started_at=start,
        ended_at=start + timedelta(seconds=30),
    )
    return tenant_id, session_id


def outbox_rows(db: Database, tenant_id: UUID) -> list[dict[str, Any]]:
    """The tenant's outbox rows, oldest first, as dicts."""
    with db.tenant(tenant_id) as cur:
        cur.execute(
            "SELECT id, subscription_id, session_id, event_type, state, attempts, payload,"
            " next_attempt_at - now() AS due_in, last_status, last_error"
            " FROM webhook_outbox ORDER BY created_at, event_type"
        )
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


async def wait_for(check: Any, *, timeout_s: float = 60.0, every_s: float = 0.05) -> Any:
    """Poll the blocking ``check()`` (in a thread) until it returns something truthy."""
    with trio.fail_after(timeout_s):
        while not (found := await trio.to_thread.run_sync(check)):
            await trio.sleep(every_s)
    return found
