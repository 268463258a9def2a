"""schema.sql against a real PostgreSQL: idempotent, tenants isolated, least privilege."""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from switchboard.orchestrator.agents import AgentSpec, Intent
from switchboard.orchestrator.db import Database, migrate, schema_sql
from switchboard.orchestrator.embedded_pg import EmbeddedPostgres, start_embedded
from switchboard.orchestrator.errors import StorageError
from switchboard.orchestrator.recording_rows import NewRecording, create_recording
from switchboard.orchestrator.recording_store import object_key
from switchboard.orchestrator.store import EventRow, Store

TENANT_TABLES = (
    "tenants",
    "api_keys",
    "agents",
    "phone_numbers",
    "voice_sessions",
    "call_events",
    "call_turns",
    "call_logs",
    "recordings",
)
FUNCTIONS = (
    "switchboard_number_agent",
    "switchboard_key_tenant",
    "switchboard_consume_admission",
    "switchboard_tenant_by_name",
    "switchboard_expired_recordings",
)


def _agent(tenant: str, number: str) -> AgentSpec:
    return AgentSpec(
        name="desk",
        tenant=tenant,
        greeting="Hello",
        intents=(Intent("bye", ("bye",), "Bye!", "hangup_call"),),
        phone_numbers=(number,),
    )


def _call(store: Store, tenant: str, number: str) -> tuple[UUID, UUID, UUID]:
    """A tenant with a row in every table: (tenant, agent, session)."""
    agent_id = store.apply_agent(_agent(tenant, number))
    tenant_id = store.ensure_tenant(tenant)
    store.create_api_key(tenant_id)
    session_id = store.create_session(tenant_id, agent_id, transport="browser")
    now = datetime.now(UTC)
    store.append_events(
        tenant_id,
        session_id,
        [
            EventRow(1, "call.started", now, 0.0, {}),
            EventRow(2, "turn:user", now, 10.0, {"text": f"hello from {tenant}"}),
        ],
    )
    store.finish_session(
        tenant_id, session_id, end_reason="hangup", turns=1, started_at=now, ended_at=now
    )
    create_recording(
        store,
        NewRecording(
            tenant_id,
            session_id,
            object_key=object_key(tenant_id, session_id),
            key_kind="keyring",
            kid="k1",
            wrapped_key=b"\x01" * 60,
            caller_encoding="pcm16",
            caller_sample_rate=24000,
            agent_encoding="pcm16",
            agent_sample_rate=24000,
        ),
    )
    return tenant_id, agent_id, session_id


def test_schema_is_package_data() -> None:
    assert "CREATE TABLE IF NOT EXISTS call_events" in schema_sql()


def test_migrating_again_is_harmless(database_url: str, store: Store) -> None:
    tenant_id, _, session_id = _call(store, "acme", "+15550000001")
    with psycopg.connect(database_url) as owner:
        before = owner.execute("SELECT count(*) FROM pg_policies").fetchone()
    migrate(database_url)
    migrate(database_url)
    with psycopg.connect(database_url) as owner:
        assert owner.execute("SELECT count(*) FROM pg_policies").fetchone() == before
    assert [e["seq"] for e in store.read_events(tenant_id, session_id)] == [1, 2]
    assert store.agent_for_number("+15550000001") is not None


def test_every_tenant_table_has_forced_row_level_security(database_url: str) -> None:
    with psycopg.connect(database_url) as owner:
        rows = owner.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
            " pg_get_userbyid(c.relowner), count(p.polname)"
            " FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid"
            " WHERE c.relname = ANY(%s) GROUP BY c.oid",
            (list(TENANT_TABLES),),
        ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(TENANT_TABLES)
    for name, enabled, forced, owner_name, policies in rows:
        assert (enabled, forced, policies) == (True, True, 1), name
        assert owner_name != "switchboard_app", name


def test_lookup_functions_are_security_definer_with_a_fixed_search_path(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as owner:
        rows = owner.execute(
            "SELECT proname, prosecdef, proconfig, pg_get_userbyid(proowner),"
            " has_function_privilege('switchboard_app', oid, 'EXECUTE'),"
            " has_function_privilege('public', oid, 'EXECUTE')"
            " FROM pg_proc WHERE proname = ANY(%s)",
            (list(FUNCTIONS),),
        ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(FUNCTIONS)
    for name, definer, config, owner_name, app_may, public_may in rows:
        assert definer, name
        assert config == ["search_path=public, pg_temp"], name
        assert owner_name == "postgres", name
        assert (app_may, public_may) == (True, False), name


def test_pool_connections_run_as_the_app_role(database: Database) -> None:
    with database.anonymous() as cur:
        cur.execute("SELECT current_user, session_user")
        assert cur.fetchone() == ("switchboard_app", "postgres")


def test_app_role_may_not_delete_or_rewrite_events(store: Store, database: Database) -> None:
    tenant_id, _, session_id = _call(store, "acme", "+15550000001")
    for statement in (
        "DELETE FROM call_events WHERE session_id = %s",
        "UPDATE call_events SET type = 'forged' WHERE session_id = %s",
        "DELETE FROM voice_sessions WHERE id = %s",
    ):
        with (
            pytest.raises(StorageError, match="permission denied") as caught,
            database.tenant(tenant_id) as cur,
        ):
            cur.execute(statement, (session_id,))
        assert isinstance(caught.value.__cause__, psycopg.errors.InsufficientPrivilege)
    assert len(store.read_events(tenant_id, session_id)) == 2


def test_a_tenant_sees_only_its_own_rows(store: Store, database: Database) -> None:
    a, _, _ = _call(store, "acme", "+15550000001")
    b, _, _ = _call(store, "bravo", "+15550000002")
    for tenant_id in (a, b):
        with database.tenant(tenant_id) as cur:
            for table in TENANT_TABLES:
                column = "id" if table == "tenants" else "tenant_id"
                cur.execute(
                    sql.SQL("SELECT DISTINCT {} FROM {}").format(
                        sql.Identifier(column), sql.Identifier(table)
                    )
                )
                assert {row[0] for row in cur.fetchall()} == {tenant_id}, table


def test_no_tenant_means_no_rows(store: Store, database: Database) -> None:
    _call(store, "acme", "+15550000001")
    with database.anonymous() as cur:
        for table in TENANT_TABLES:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            assert cur.fetchone() == (0,), table


def test_guessing_another_tenants_ids_gets_nothing(store: Store, database: Database) -> None:
    a, _, _ = _call(store, "acme", "+15550000001")
    b, b_agent, b_session = _call(store, "bravo", "+15550000002")

    assert store.read_events(a, b_session) == []
    assert store.read_turns(a, b_session) == []
    with pytest.raises(StorageError, match="has no agent"):
        store.get_agent(a, b_agent)
    with pytest.raises(StorageError, match="has no session"):
        store.mark_session(a, b_session, status="ended")
    with database.tenant(a) as cur:
        cur.execute("UPDATE agents SET name = 'stolen' WHERE id = %s", (b_agent,))
        assert cur.rowcount == 0
        cur.execute("SELECT count(*) FROM voice_sessions WHERE id = %s", (b_session,))
        assert cur.fetchone() == (0,)
    assert store.get_agent(b, b_agent).name == "desk"
    store.mark_session(b, b_session, status="failed")


def test_writing_into_another_tenant_is_refused(store: Store, database: Database) -> None:
    a, _, a_session = _call(store, "acme", "+15550000001")
    b, b_agent, b_session = _call(store, "bravo", "+15550000002")
    now = datetime.now(UTC)
    attempts = [
        # a row labelled as tenant B: row-level security's WITH CHECK refuses it
        (
            "INSERT INTO call_events (tenant_id, session_id, seq, type, ts, t_ms)"
            " VALUES (%s, %s, 99, 'forged', %s, 0)",
            (b, b_session, now),
            "row-level security",
        ),
        # a row of tenant A pointing at B's session: the composite foreign key refuses it
        (
            "INSERT INTO call_events (tenant_id, session_id, seq, type, ts, t_ms)"
            " VALUES (%s, %s, 99, 'forged', %s, 0)",
            (a, b_session, now),
            "foreign key",
        ),
        (
            "INSERT INTO voice_sessions (tenant_id, agent_id, transport) VALUES (%s, %s, 'twilio')",
            (a, b_agent),
            "foreign key",
        ),
        (
            "INSERT INTO agents (tenant_id, name, spec) VALUES (%s, 'evil', '{}')",
            (b,),
            "row-level security",
        ),
        ("INSERT INTO tenants (id, name) VALUES (%s, 'evil')", (uuid4(),), "row-level security"),
        (
            "UPDATE voice_sessions SET tenant_id = %s WHERE id = %s",
            (b, a_session),
            "row-level security",
        ),
    ]
    for statement, params, reason in attempts:
        with pytest.raises(StorageError, match=reason), database.tenant(a) as cur:
            cur.execute(statement, params)
    assert [e["seq"] for e in store.read_events(b, b_session)] == [1, 2]
    assert [e["seq"] for e in store.read_events(a, a_session)] == [1, 2]


def test_an_owner_that_cannot_bypass_row_level_security_is_refused(
    pg_server: EmbeddedPostgres, database_url: str
) -> None:
    role = f"weak_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server.uri, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        try:
            with pytest.raises(StorageError, match=f"role {role} cannot own") as caught:
                migrate(make_conninfo(database_url, user=role))
            assert "BYPASSRLS" in str(caught.value)
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_ensure_tenant_survives_losing_a_creation_race(store: Store, database: Database) -> None:
    acme = store.ensure_tenant("acme")
    # What a racing process that did not see "acme" yet would run: no error, no row.
    with database.tenant(uuid4()) as cur:
        cur.execute(
            "INSERT INTO tenants (id, name) VALUES (current_setting('app.tenant_id')::uuid,"
            " 'acme') ON CONFLICT (name) DO NOTHING RETURNING id"
        )
        assert cur.fetchone() is None
    assert store.ensure_tenant("acme") == acme


def test_embedded_server_keeps_its_data_across_restarts() -> None:
    # Not pytest's tmp_path: started as root, pgserver opens the folder's parents to others.
    with tempfile.TemporaryDirectory(prefix="switchboard-test-pg-") as folder:
        data_dir = Path(folder)
        with start_embedded(data_dir) as pg:
            runtime_dir = Path(os.environ["XDG_RUNTIME_DIR"])
            with psycopg.connect(pg.uri, autocommit=True) as conn:
                conn.execute("CREATE TABLE kept (x int)")
                conn.execute("INSERT INTO kept VALUES (42)")
        assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
        with start_embedded(data_dir) as pg, psycopg.connect(pg.uri) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.uri, connect_timeout=2)
