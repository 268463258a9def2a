"""Crash recovery at start (issue 11): the sessions a crash left 'active' are closed as
"server lost", only this instance's, and expired admissions stop being 'pending'."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.errors import ConfigError
from switchboard.orchestrator.recovery import instance_id, recover
from switchboard.orchestrator.store import EventRow, Store

AGENT = parse_agent_yaml(
    "name: desk\ntenant: acme\ngreeting: hi\nphone_numbers: ['+15005550100']\n"
    "intents:\n  - name: bye\n    phrases: [bye]\n    reply: bye\n"
)


def active_session(store: Store) -> tuple[UUID, UUID]:
    tenant_id = store.ensure_tenant("acme")
    agent_id = store.apply_agent(AGENT)
    session_id = store.create_session(tenant_id, agent_id, transport="twilio")
    store.mark_session(tenant_id, session_id, status="active")
    return tenant_id, session_id


def state(database_url: str, session_id: UUID) -> tuple[object, ...] | None:
    with psycopg.connect(database_url) as owner:
        return owner.execute(
            "SELECT s.status, s.owner, l.end_reason FROM voice_sessions s"
            " LEFT JOIN call_logs l ON l.session_id = s.id WHERE s.id = %s",
            (session_id,),
        ).fetchone()


def test_the_sessions_this_instance_left_active_are_closed_as_server_lost(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    mine, theirs = Store(database, owner="sb-mine"), Store(database, owner="sb-theirs")
    tenant_id, lost = active_session(mine)
    mine.append_events(tenant_id, lost, [EventRow(1, "session.start", datetime.now(UTC), 0.0, {})])
    _, other = active_session(theirs)  # another instance's live call

    report = recover(mine, tmp_path / "spool", "sb-mine")

    assert report.closed == 1
    assert state(database_url, lost) == ("ended", "sb-mine", "server lost")
    events = mine.read_events(tenant_id, lost)
    assert [(e["seq"], e["type"]) for e in events] == [(1, "session.start"), (2, "session.end")]
    assert events[-1]["payload"]["reason"] == "server lost"
    assert state(database_url, other) == ("active", "sb-theirs", None)
    assert recover(mine, tmp_path / "spool", "sb-mine").closed == 0  # once


def test_expired_admissions_stop_being_pending(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    tenant_id = store.ensure_tenant("acme")
    agent_id = store.apply_agent(AGENT)
    expired = store.create_session(
        tenant_id, agent_id, transport="twilio", admission_hash="a" * 64, admission_ttl_s=60
    )
    fresh = store.create_session(
        tenant_id, agent_id, transport="twilio", admission_hash="b" * 64, admission_ttl_s=60
    )
    with psycopg.connect(database_url) as owner:
        owner.execute(
            "UPDATE voice_sessions SET admission_expires_at = now() - interval '1 s' WHERE id = %s",
            (expired,),
        )
    assert recover(store, tmp_path, "sb-x").expired == 1
    assert state(database_url, expired) == ("failed", None, None)
    assert state(database_url, fresh) == ("pending", None, None)


def test_the_instance_id_is_kept_in_the_data_folder_or_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INSTANCE_ID", raising=False)
    first = instance_id(tmp_path)
    assert first.startswith("sb-") and instance_id(tmp_path) == first  # a restart: the same
    assert instance_id(tmp_path / "other") != first
    monkeypatch.setenv("INSTANCE_ID", "switchboard-0")
    assert instance_id(tmp_path) == "switchboard-0"
    monkeypatch.setenv("INSTANCE_ID", " ")
    with pytest.raises(ConfigError, match="INSTANCE_ID"):
        instance_id(tmp_path)
