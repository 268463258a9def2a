"""Agent versions: the agent exactly as a call saw it, kept after the agent changes.

An agent's row is updated in place by ``agent apply``; each distinct spec it
has had is also kept in ``agent_versions`` (migration 0005) under its
*version*: the SHA-256 of the spec's canonical JSON (:func:`canonical_json`),
64 lowercase hex digits. ``session.start`` carries the version the call ran on
(``agent_version``), so a trace finds the spec by it.

Written by :meth:`.store.Store.apply_agent` (same transaction as the spec) and,
for an agent applied before versions existed, by the call that starts on it
(:meth:`.store.Store.keep_agent_version`); both are idempotent inserts.

Synchronous and blocking, like :class:`~.store.Store` (run them with
``trio.to_thread.run_sync``). Errors: :class:`~.errors.StorageError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, final
from uuid import UUID

from psycopg.types.json import Jsonb

from .agents import AgentSpec
from .errors import StorageError

if TYPE_CHECKING:
    from .db import Cursor
    from .store import Store

__all__ = [
    "AgentVersion",
    "canonical_json",
    "get_version",
    "insert_version",
    "put_version",
    "spec_version",
    "version_of_json",
]


@final
@dataclass(frozen=True)
class AgentVersion:
    """One stored version: whose agent, its hash, the spec as JSON data, when it was kept."""

    tenant_id: UUID
    agent_id: UUID
    version: str
    spec: Mapping[str, Any]
    created_at: datetime


def canonical_json(spec_json: Mapping[str, Any]) -> bytes:
    """``spec_json`` (:meth:`AgentSpec.to_json` output) as canonical JSON, UTF-8:
    keys sorted at every level, no whitespace, non-ASCII kept as is (RFC 8785's
    ordering for the strings, numbers and nesting a spec has)."""
    return json.dumps(
        spec_json, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def version_of_json(spec_json: Mapping[str, Any]) -> str:
    """The version of a spec given as JSON data: SHA-256 hex of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(spec_json)).hexdigest()


def spec_version(spec: AgentSpec) -> str:
    """The version of ``spec`` (about 50 us for a typical agent)."""
    return version_of_json(spec.to_json())


def insert_version(cur: Cursor, tenant_id: UUID, agent_id: UUID, spec: AgentSpec) -> str:
    """Keep ``spec`` as a version of the agent inside the caller's transaction ``cur``
    (a tenant transaction of ``tenant_id``); return the version. Idempotent."""
    data = spec.to_json()
    version = version_of_json(data)
    cur.execute(
        "INSERT INTO agent_versions (tenant_id, agent_id, version, spec) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (tenant_id, agent_id, version, Jsonb(data)),
    )
    return version


def put_version(
    store: Store, tenant_id: UUID, agent_id: UUID, spec_json: Mapping[str, Any], version: str
) -> None:
    """Keep a version given as JSON data (a trace being imported) under ``version``.

    Raises:
        StorageError: ``spec_json`` is not a valid spec, or not version ``version``
            (altered), or PostgreSQL refused.
    """
    try:
        spec = AgentSpec.from_json(spec_json)
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"the agent snapshot is not a valid agent: {exc}") from exc
    actual = version_of_json(spec.to_json())
    if actual != version:
        raise StorageError(
            f"the agent snapshot is version {actual[:12]}..., not {version[:12]}... (altered?)"
        )
    with store.db.tenant(tenant_id) as cur:
        insert_version(cur, tenant_id, agent_id, spec)


def get_version(store: Store, tenant_id: UUID, version: str) -> AgentVersion | None:
    """The tenant's agent version ``version``, or None."""
    with store.db.tenant(tenant_id) as cur:
        cur.execute(
            "SELECT agent_id, spec, created_at FROM agent_versions WHERE version = %s"
            " ORDER BY created_at LIMIT 1",
            (version,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    agent_id = row[0] if isinstance(row[0], UUID) else UUID(str(row[0]))
    return AgentVersion(tenant_id, agent_id, version, row[1], row[2])
