"""What the runtime keeps in PostgreSQL: tenants, API keys, agents, sessions, call events.

:class:`Store` wraps a :class:`~switchboard.orchestrator.db.Database`. Its
methods are synchronous and blocking (run them with ``trio.to_thread.run_sync``)
and each is one transaction, except where its docstring says otherwise. A
method that names a tenant touches only that tenant's rows: row-level security
enforces it, not the SQL here.

Secrets are never stored: an API key or an admission token is kept as the
SHA-256 hex digest of its text (:func:`token_hash`).

Errors: :class:`~switchboard.orchestrator.errors.StorageError` for anything
PostgreSQL refuses or fails (the psycopg error is its cause), including a
session or agent that does not exist for the tenant;
:class:`~switchboard.orchestrator.errors.ConfigError` for a phone number that
another tenant owns; ``ValueError`` for arguments outside the documented values.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, final
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb

from .agent_versions import insert_version
from .agents import AgentSpec
from .db import Cursor, Database
from .errors import ConfigError, StorageError
from .knowledge import chunk_sources
from .knowledge_store import replace_chunks
from .outbox_store import call_data, queue_call_ended

__all__ = [
    "API_KEY_PREFIX",
    "SESSION_STATUSES",
    "TOKEN_USE_RESULTS",
    "TRANSPORTS",
    "TURN_EVENT_ROLES",
    "Admission",
    "AgentRecord",
    "EventRow",
    "Store",
    "Turn",
    "token_hash",
]

API_KEY_PREFIX: Final = "sb_"
TRANSPORTS: Final = ("twilio", "browser", "realtime")
SESSION_STATUSES: Final = ("pending", "active", "ended", "failed")
TOKEN_USE_RESULTS: Final = ("ok", "unknown_tenant", "unknown_session", "reused")
"""What :meth:`Store.consume_token` answers."""
TURN_EVENT_ROLES: Final = {"turn:user": "caller", "turn:agent": "agent"}
"""Event types that also make a ``call_turns`` row, and the role they get."""


def token_hash(secret: str) -> str:
    """SHA-256 of ``secret`` (UTF-8) as 64 lowercase hex digits: how keys and tokens are stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


@final
@dataclass(frozen=True)
class AgentRecord:
    """An agent as stored: whose it is, its id, and its spec."""

    tenant_id: UUID
    agent_id: UUID
    spec: AgentSpec


@final
@dataclass(frozen=True)
class Admission:
    """The session an admission token opened (the token is now spent)."""

    session_id: UUID
    tenant_id: UUID
    agent_id: UUID


@final
@dataclass(frozen=True)
class EventRow:
    """One call event, as the event logger writes it.

    Attributes:
        seq: position in the call's event log, from 0; ``(session, seq)`` is the key.
        type: event type, for example ``"turn:user"`` or ``"provider.failed"``.
        ts: wall-clock time (timezone-aware).
        t_ms: monotonic milliseconds since the call started.
        payload: JSON object; ``turn:user`` / ``turn:agent`` events carry ``"text"``.
    """

    seq: int
    type: str
    ts: datetime
    t_ms: float
    payload: Mapping[str, Any]

    def __post_init__(self) -> None:
        if self.seq < 0:
            raise ValueError(f"seq must be >= 0, got {self.seq}")
        if self.ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware")
        if self.type in TURN_EVENT_ROLES and not isinstance(self.payload.get("text"), str):
            raise ValueError(f"a {self.type} event needs payload['text'] (a string)")


@final
@dataclass(frozen=True)
class Turn:
    """One utterance of a call, from ``call_turns``."""

    seq: int
    role: str  # "caller" or "agent"
    text: str
    ts: datetime


@final
class Store:
    """The data layer's operations; see the module docstring for threading and errors.

    ``owner``: this server instance's id (:func:`.recovery.instance_id`), written to
    each session it makes ``active``, so that after a crash it can find its calls.
    """

    def __init__(self, db: Database, *, owner: str | None = None) -> None:
        self.db = db
        self.owner = owner

    # -- tenants and API keys

    def ensure_tenant(self, name: str) -> UUID:
        """The id of the tenant called ``name``, creating it if missing (safe under races)."""
        if not name.strip():
            raise ValueError("tenant name must not be empty")
        existing = self._tenant_by_name(name)
        if existing is not None:
            return existing
        new_id = uuid4()
        with self.db.tenant(new_id) as cur:
            cur.execute(
                "INSERT INTO tenants (id, name) VALUES (%s, %s)"
                " ON CONFLICT (name) DO NOTHING RETURNING id",
                (new_id, name),
            )
            created = cur.fetchone()
        if created is not None:
            return _as_uuid(created[0])
        existing = self._tenant_by_name(name)  # another process created it meanwhile
        if existing is None:
            raise StorageError(f"tenant {name!r} could be neither created nor found")
        return existing

    def _tenant_by_name(self, name: str) -> UUID | None:
        with self.db.anonymous() as cur:
            cur.execute("SELECT switchboard_tenant_by_name(%s)", (name,))
            row = cur.fetchone()
        return None if row is None or row[0] is None else _as_uuid(row[0])

    def create_api_key(self, tenant_id: UUID) -> str:
        """A new API key for the tenant: ``sb_`` and 32 URL-safe characters.

        Only its hash and its first 8 characters are stored; the key itself is
        returned once, here.
        """
        key = API_KEY_PREFIX + secrets.token_urlsafe(24)
        with self.db.tenant(tenant_id) as cur:
            cur.execute(
                "INSERT INTO api_keys (tenant_id, key_hash, prefix) VALUES (%s, %s, %s)",
                (tenant_id, token_hash(key), key[:8]),
            )
        return key

    def revoke_api_key(self, tenant_id: UUID, key: str) -> bool:
        """Revoke the tenant's ``key``; False if the tenant has no such live key."""
        with self.db.tenant(tenant_id) as cur:
            cur.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE key_hash = %s AND revoked_at IS NULL",
                (token_hash(key),),
            )
            return cur.rowcount == 1

    def tenant_for_api_key(self, key: str) -> UUID | None:
        """The tenant whose live (not revoked) key ``key`` is, or None."""
        if not key.startswith(API_KEY_PREFIX):
            return None
        with self.db.anonymous() as cur:
            cur.execute("SELECT switchboard_key_tenant(%s)", (token_hash(key),))
            row = cur.fetchone()
        return None if row is None or row[0] is None else _as_uuid(row[0])

    def tenant_by_name(self, name: str) -> UUID | None:
        """The id of the tenant called ``name``, or None."""
        return self._tenant_by_name(name)

    def agent_id_by_name(self, tenant_id: UUID, name: str) -> UUID | None:
        """The id of the tenant's agent called ``name``, or None."""
        with self.db.tenant(tenant_id) as cur:
            cur.execute("SELECT id FROM agents WHERE name = %s", (name,))
            row = cur.fetchone()
        return None if row is None else _as_uuid(row[0])

    # -- agents and phone numbers

    def apply_agent(self, spec: AgentSpec) -> UUID:
        """Create or update the agent ``spec.name`` of tenant ``spec.tenant``; return its id.

        The tenant is created if missing. The agent's phone numbers become exactly
        ``spec.phone_numbers``, in the same transaction as the spec; a number held
        by another agent of the same tenant moves to this one. The spec is kept as
        a version of the agent (:mod:`.agent_versions`) if it is new, and its
        ``knowledge`` is re-indexed (:mod:`.knowledge_store`: the agent's chunks are
        replaced by the spec's).

        Raises:
            ConfigError: a number belongs to another tenant (the message names it);
                nothing is changed.
        """
        tenant_id = self.ensure_tenant(spec.tenant)
        numbers = list(spec.phone_numbers)
        chunks = chunk_sources(spec.knowledge)
        with self.db.tenant(tenant_id) as cur:
            for number in numbers:
                cur.execute("SELECT tenant_id FROM switchboard_number_agent(%s)", (number,))
                row = cur.fetchone()
                if row is not None and _as_uuid(row[0]) != tenant_id:
                    raise _number_taken(number)
            cur.execute(
                "INSERT INTO agents (tenant_id, name, spec) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id, name)"
                " DO UPDATE SET spec = EXCLUDED.spec, updated_at = now()"
                " RETURNING id",
                (tenant_id, spec.name, Jsonb(spec.to_json())),
            )
            agent_id = _uuid(cur)
            insert_version(cur, tenant_id, agent_id, spec)
            replace_chunks(cur, tenant_id, agent_id, chunks)
            cur.execute(
                "DELETE FROM phone_numbers WHERE agent_id = %s AND NOT (e164 = ANY(%s::text[]))",
                (agent_id, numbers),
            )
            for number in numbers:
                try:
                    cur.execute(
                        "INSERT INTO phone_numbers (e164, tenant_id, agent_id) VALUES (%s, %s, %s)"
                        " ON CONFLICT (e164) DO UPDATE SET agent_id = EXCLUDED.agent_id",
                        (number, tenant_id, agent_id),
                    )
                except psycopg.errors.InsufficientPrivilege as exc:
                    # Claimed by another tenant since the check above: RLS refuses the update.
                    raise _number_taken(number) from exc
        return agent_id

    def keep_agent_version(self, tenant_id: UUID, agent_id: UUID, spec: AgentSpec) -> str:
        """Keep ``spec`` as a version of the agent if it is not kept yet; return the version
        (:mod:`.agent_versions`). Raises StorageError when the tenant has no such agent."""
        with self.db.tenant(tenant_id) as cur:
            return insert_version(cur, tenant_id, agent_id, spec)

    def agent_for_number(self, e164: str) -> AgentRecord | None:
        """The agent that answers calls to ``e164``, or None (two transactions)."""
        with self.db.anonymous() as cur:
            cur.execute("SELECT tenant_id, agent_id FROM switchboard_number_agent(%s)", (e164,))
            row = cur.fetchone()
        if row is None:
            return None
        tenant_id, agent_id = _as_uuid(row[0]), _as_uuid(row[1])
        return AgentRecord(tenant_id, agent_id, self.get_agent(tenant_id, agent_id))

    def get_agent(self, tenant_id: UUID, agent_id: UUID) -> AgentSpec:
        """The tenant's agent ``agent_id``.

        Raises:
            StorageError: no such agent for this tenant, or its stored spec is unreadable.
        """
        with self.db.tenant(tenant_id) as cur:
            cur.execute("SELECT spec FROM agents WHERE id = %s", (agent_id,))
            row = cur.fetchone()
        if row is None:
            raise StorageError(f"tenant {tenant_id} has no agent {agent_id}")
        try:
            return AgentSpec.from_json(row[0])
        except ValueError as exc:
            raise StorageError(f"agent {agent_id} has an unreadable spec: {exc}") from exc

    # -- sessions

    def create_session(
        self,
        tenant_id: UUID,
        agent_id: UUID,
        *,
        transport: str,
        call_sid: str | None = None,
        from_number: str | None = None,
        to_number: str | None = None,
        admission_hash: str | None = None,
        admission_ttl_s: float = 60,
    ) -> UUID:
        """A new ``pending`` voice session; return its id.

        Args:
            transport: one of :data:`TRANSPORTS`.
            admission_hash: :func:`token_hash` of a single-use admission token, or None.
            admission_ttl_s: seconds the token stays valid, from now (database clock).

        Raises:
            StorageError: the agent is not the tenant's, or the hash is already in use.
        """
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        with self.db.tenant(tenant_id) as cur:
            cur.execute(
                "INSERT INTO voice_sessions (tenant_id, agent_id, transport, call_sid,"
                " from_number, to_number, admission_hash, admission_expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s,"
                " CASE WHEN %s::text IS NULL THEN NULL"
                " ELSE now() + make_interval(secs => %s) END)"
                " RETURNING id",
                (
                    tenant_id,
                    agent_id,
                    transport,
                    call_sid,
                    from_number,
                    to_number,
                    admission_hash,
                    admission_hash,
                    admission_ttl_s,
                ),
            )
            return _uuid(cur)

    def ping(self) -> None:
        """A round trip to PostgreSQL (``SELECT 1``); raises StorageError if there is none."""
        with self.db.anonymous() as cur:
            cur.execute("SELECT 1")

    def consume_admission(self, admission_hash: str, call_sid: str | None) -> Admission | None:
        """Spend the admission token whose hash is ``admission_hash``, for call ``call_sid``.

        Returns the session it opens, or None if there is no such token, it has
        expired, it was spent before, or it was issued for another CallSid (then
        it is not spent). Exactly one of any number of concurrent callers gets
        the admission.
        """
        with self.db.anonymous() as cur:
            cur.execute(
                "SELECT session_id, tenant_id, agent_id FROM switchboard_consume_admission(%s, %s)",
                (admission_hash, call_sid),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return Admission(_as_uuid(row[0]), _as_uuid(row[1]), _as_uuid(row[2]))

    def consume_token(
        self,
        jti: str,
        *,
        tenant_id: UUID,
        session_id: UUID,
        agent_id: UUID,
        expires_at: datetime,
    ) -> str:
        """Spend a session token's ``jti``, atomically (one of :data:`TOKEN_USE_RESULTS`).

        ``"ok"``: the token was unused and now is spent. ``"unknown_tenant"``:
        no such tenant here. ``"unknown_session"``: the tenant has no session
        ``session_id`` of agent ``agent_id``. ``"reused"``: spent before.
        Nothing is written unless the answer is ``"ok"``; of any number of
        concurrent callers with one ``jti``, exactly one gets ``"ok"``.
        """
        with self.db.anonymous() as cur:
            cur.execute(
                "SELECT switchboard_consume_token(%s, %s, %s, %s, %s)",
                (jti, tenant_id, session_id, agent_id, expires_at),
            )
            row = cur.fetchone()
        if row is None or row[0] not in TOKEN_USE_RESULTS:
            raise StorageError(f"switchboard_consume_token answered {row!r}")
        return str(row[0])

    def mark_session(
        self, tenant_id: UUID, session_id: UUID, *, status: str, stream_sid: str | None = None
    ) -> None:
        """Set the session's status; ``active`` stamps ``started_at`` (and the store's
        ``owner``, if it has one) and ``ended`` /
        ``failed`` stamp ``ended_at`` (first time only). ``stream_sid`` is kept if None.

        Raises:
            StorageError: the tenant has no such session.
        """
        if status not in SESSION_STATUSES:
            raise ValueError(f"status must be one of {SESSION_STATUSES}, got {status!r}")
        with self.db.tenant(tenant_id) as cur:
            cur.execute(
                "UPDATE voice_sessions SET status = %(status)s,"
                " stream_sid = COALESCE(%(stream_sid)s, stream_sid),"
                " owner = CASE WHEN %(status)s = 'active'"
                "   THEN COALESCE(%(owner)s, owner) ELSE owner END,"
                " started_at = CASE WHEN %(status)s = 'active'"
                "   THEN COALESCE(started_at, now()) ELSE started_at END,"
                " ended_at = CASE WHEN %(status)s IN ('ended', 'failed')"
                "   THEN COALESCE(ended_at, now()) ELSE ended_at END"
                " WHERE id = %(id)s",
                {
                    "status": status,
                    "stream_sid": stream_sid,
                    "owner": self.owner,
                    "id": session_id,
                },
            )
            _require_one(cur, tenant_id, session_id)

    def finish_session(
        self,
        tenant_id: UUID,
        session_id: UUID,
        *,
        end_reason: str,
        turns: int,
        started_at: datetime,
        ended_at: datetime,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        """Close the session and write its ``call_logs`` row; repeating it changes nothing.

        With the row, in the same transaction, the call's post-call job and its
        ``call.ended`` webhooks are queued (:func:`.outbox_store.queue_call_ended`).

        The session becomes ``ended`` (a ``failed`` one stays ``failed``); its
        start and end times are set where still empty. The first call's log row
        is kept.

        Args:
            turns: completed turns of the call.
            started_at, ended_at: wall-clock bounds of the call (timezone-aware);
                ``duration_ms`` is their difference.

        Raises:
            StorageError: the tenant has no such session.
        """
        if ended_at < started_at:
            raise ValueError("ended_at is before started_at")
        if turns < 0:
            raise ValueError(f"turns must be >= 0, got {turns}")
        duration_ms = round((ended_at - started_at).total_seconds() * 1000)
        with self.db.tenant(tenant_id) as cur:
            cur.execute(
                "UPDATE voice_sessions SET"
                " status = CASE WHEN status = 'failed' THEN 'failed' ELSE 'ended' END,"
                " started_at = COALESCE(started_at, %s), ended_at = COALESCE(ended_at, %s)"
                " WHERE id = %s RETURNING agent_id",
                (started_at, ended_at, session_id),
            )
            row = cur.fetchone()
            if row is None:
                raise StorageError(f"tenant {tenant_id} has no session {session_id}")
            cur.execute(
                "INSERT INTO call_logs (session_id, tenant_id, agent_id, started_at, ended_at,"
                " duration_ms, turns, end_reason, summary)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (session_id) DO NOTHING RETURNING session_id",
                (
                    session_id,
                    tenant_id,
                    row[0],
                    started_at,
                    ended_at,
                    duration_ms,
                    turns,
                    end_reason,
                    Jsonb(dict(summary or {})),
                ),
            )
            if cur.fetchone() is not None:  # the first end: its post-call work, same transaction
                data = call_data(
                    session_id, row[0], started_at, ended_at, duration_ms, turns, end_reason
                )
                queue_call_ended(cur, tenant_id, session_id, data)

    # -- events

    def append_events(self, tenant_id: UUID, session_id: UUID, events: Sequence[EventRow]) -> None:
        """Write a batch of the session's events in one transaction.

        Idempotent: an event whose ``(session, seq)`` is already stored is skipped,
        so a retried batch never duplicates. ``turn:user`` / ``turn:agent`` events
        also make a ``call_turns`` row (role ``caller`` / ``agent``, text from
        ``payload["text"]``).

        Raises:
            StorageError: the tenant has no such session; nothing of the batch is written.
            ValueError: a payload is not JSON (no NaN or infinity either); nothing is written.
        """
        if not events:
            return
        rows = [(tenant_id, session_id, e.seq, e.type, e.ts, e.t_ms, _json_text(e)) for e in events]
        with self.db.tenant(tenant_id) as cur:
            cur.executemany(
                "INSERT INTO call_events (tenant_id, session_id, seq, type, ts, t_ms, payload)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)"
                " ON CONFLICT (session_id, seq) DO NOTHING",
                rows,
            )
            turns = [
                (tenant_id, session_id, e.seq, TURN_EVENT_ROLES[e.type], e.payload["text"], e.ts)
                for e in events
                if e.type in TURN_EVENT_ROLES
            ]
            if turns:
                cur.executemany(
                    "INSERT INTO call_turns (tenant_id, session_id, seq, role, text, ts)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (session_id, seq) DO NOTHING",
                    turns,
                )

    def read_events(
        self, tenant_id: UUID, session_id: UUID, *, after_seq: int = -1
    ) -> list[dict[str, Any]]:
        """The session's events after ``after_seq`` (default: all), in ``seq`` order, as JSON.

        Each is ``{"seq": int, "type": str, "ts": ISO 8601 str (UTC), "t_ms": float,
        "payload": dict}``. Empty for an unknown session or another tenant's.
        """
        with self.db.tenant(tenant_id) as cur:
            cur.execute(
                "SELECT seq, type, ts, t_ms, payload FROM call_events"
                " WHERE session_id = %s AND seq > %s ORDER BY seq",
                (session_id, after_seq),
            )
            rows = cur.fetchall()
        return [
            {"seq": seq, "type": type_, "ts": ts.isoformat(), "t_ms": t_ms, "payload": payload}
            for seq, type_, ts, t_ms, payload in rows
        ]

    def read_turns(self, tenant_id: UUID, session_id: UUID) -> list[Turn]:
        """The session's caller and agent utterances in ``seq`` order."""
        with self.db.tenant(tenant_id) as cur:
            cur.execute(
                "SELECT seq, role, text, ts FROM call_turns WHERE session_id = %s ORDER BY seq",
                (session_id,),
            )
            rows = cur.fetchall()
        return [Turn(seq, role, text, ts) for seq, role, text, ts in rows]


def _json_text(event: EventRow) -> str:
    try:
        return json.dumps(dict(event.payload), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"payload of event {event.seq} ({event.type}) is not JSON: {exc}") from exc


def _number_taken(number: str) -> ConfigError:
    return ConfigError(f"phone number {number} already belongs to another tenant's agent")


def _as_uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _uuid(cur: Cursor) -> UUID:
    row = cur.fetchone()
    if row is None:
        raise StorageError("the database returned no id")
    return _as_uuid(row[0])


def _require_one(cur: Cursor, tenant_id: UUID, session_id: UUID) -> None:
    if cur.rowcount != 1:
        raise StorageError(f"tenant {tenant_id} has no session {session_id}")
