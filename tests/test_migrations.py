"""Versioned migrations and the connection pool, against the real embedded PostgreSQL.

The previous release: ``tests/data/schema_before_migrations.sql`` is ``schema.sql``
as released before versioned migrations (commit ba20ab0^, kept verbatim), which
that release applied at every start. A database it made, with rows in every
table, is upgraded in place by today's ``migrate``.
"""

from __future__ import annotations

import json
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from switchboard.orchestrator import cli
from switchboard.orchestrator.agents import AgentSpec, Intent
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.embedded_pg import EmbeddedPostgres, start_embedded
from switchboard.orchestrator.errors import StorageError
from switchboard.orchestrator.schema import (
    Migration,
    known_migrations,
    migrate,
    schema_status,
)
from switchboard.orchestrator.store import EventRow, Store, token_hash

PREVIOUS_RELEASE_SCHEMA = Path(__file__).parent / "data" / "schema_before_migrations.sql"
TABLES = (
    "tenants",
    "api_keys",
    "agents",
    "phone_numbers",
    "voice_sessions",
    "call_events",
    "call_turns",
    "call_logs",
    "recordings",
    "session_token_uses",
)


@pytest.fixture
def blank_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A fresh, empty database (not migrated), dropped after the test."""
    name = f"mig_{secrets.token_hex(6)}"
    with psycopg.connect(pg_server.uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(pg_server.uri, dbname=name)
    finally:
        with psycopg.connect(pg_server.uri, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# -- a database made by the previous release


API_KEY = "sb_previous-release-key-0123456789abc"
ADMISSION = "admission-token-of-a-pending-call"


def _previous_release_database(url: str) -> dict[str, UUID]:
    """Apply the previous release's schema.sql the way it did (one transaction) and write
    what its calls left: a tenant, a key, an agent and its number, an ended call with
    events, turns and log, a spent session token, an active and a pending call."""
    tenant, agent, ended, active, pending = (uuid4() for _ in range(5))
    spec = AgentSpec(
        name="desk",
        tenant="acme",
        greeting="Hello from before",
        intents=(Intent("bye", ("bye",), "Bye!", "hangup_call"),),
        phone_numbers=("+15550001111",),
    )
    t0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    with psycopg.connect(url) as conn:  # the superuser: row-level security does not apply
        with conn.transaction():
            conn.execute(PREVIOUS_RELEASE_SCHEMA.read_bytes())
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, 'acme')", (tenant,))
        conn.execute(
            "INSERT INTO api_keys (tenant_id, key_hash, prefix) VALUES (%s, %s, %s)",
            (tenant, token_hash(API_KEY), API_KEY[:8]),
        )
        conn.execute(
            "INSERT INTO agents (id, tenant_id, name, spec) VALUES (%s, %s, 'desk', %s)",
            (agent, tenant, json.dumps(spec.to_json())),
        )
        conn.execute(
            "INSERT INTO phone_numbers (e164, tenant_id, agent_id) VALUES ('+15550001111', %s, %s)",
            (tenant, agent),
        )
        conn.execute(
            "INSERT INTO voice_sessions (id, tenant_id, agent_id, transport, call_sid, status,"
            " started_at, ended_at) VALUES (%s, %s, %s, 'twilio', 'CA1', 'ended', %s, %s),"
            " (%s, %s, %s, 'browser', NULL, 'active', %s, NULL)",
            (ended, tenant, agent, t0, t0 + timedelta(seconds=30), active, tenant, agent, t0),
        )
        conn.execute(
            "INSERT INTO voice_sessions (id, tenant_id, agent_id, transport, call_sid,"
            " admission_hash, admission_expires_at) VALUES (%s, %s, %s, 'twilio', 'CA2', %s,"
            " now() + interval '1 hour')",
            (pending, tenant, agent, token_hash(ADMISSION)),
        )
        events = [
            (1, "call.started", {}),
            (2, "turn:user", {"text": "what are your hours"}),
            (3, "turn:agent", {"text": "nine to five"}),
        ]
        for seq, type_, payload in events:
            conn.execute(
                "INSERT INTO call_events (tenant_id, session_id, seq, type, ts, t_ms, payload)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (tenant, ended, seq, type_, t0, 100.0 * seq, json.dumps(payload)),
            )
        conn.execute(
            "INSERT INTO call_turns (tenant_id, session_id, seq, role, text, ts) VALUES"
            " (%s, %s, 2, 'caller', 'what are your hours', %s),"
            " (%s, %s, 3, 'agent', 'nine to five', %s)",
            (tenant, ended, t0, tenant, ended, t0),
        )
        conn.execute(
            "INSERT INTO call_logs (session_id, tenant_id, agent_id, started_at, ended_at,"
            " duration_ms, turns, end_reason) VALUES (%s, %s, %s, %s, %s, 30000, 1, 'hangup')",
            (ended, tenant, agent, t0, t0 + timedelta(seconds=30)),
        )
        conn.execute(
            "INSERT INTO session_token_uses (jti, tenant_id, session_id, expires_at)"
            " VALUES ('jti-1', %s, %s, %s)",
            (tenant, ended, t0 + timedelta(minutes=5)),
        )
    return {"tenant": tenant, "agent": agent, "ended": ended, "active": active, "pending": pending}


def _every_row(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, as the owner sees them, in a fixed order."""
    with psycopg.connect(url) as conn:
        return {
            table: sorted(
                conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))).fetchall(),
                key=repr,
            )
            for table in TABLES
        }


def test_a_database_of_the_previous_release_is_upgraded_in_place(blank_url: str) -> None:
    ids = _previous_release_database(blank_url)
    before = _every_row(blank_url)
    state = schema_status(blank_url)
    assert state.unversioned and state.applied == ()
    assert [m.label for m in state.pending] == [m.label for m in known_migrations()]

    applied = migrate(blank_url)

    assert [m.label for m in applied] == [
        "0001_baseline",
        "0002_session_owner",
        "0003_recovery",
        "0004_recordings",
        "0005_agent_versions",
        "0006_knowledge",
        "0007_tenant_tools",
        "0008_post_call",
        "0009_runtime_config",
    ]
    after = _every_row(blank_url)
    # Every row kept, each column as it was; voice_sessions gained `owner` and tenants
    # `recording_public_key`, NULL; `recordings` (never written) was replaced, empty.
    for table in TABLES:
        if table not in ("voice_sessions", "tenants"):
            assert after[table] == before[table], table
    for table, rows in (("voice_sessions", 3), ("tenants", 1)):
        assert [row[:-1] for row in after[table]] == before[table], table
        assert [row[-1] for row in after[table]] == [None] * rows, table
    assert after["recordings"] == []
    with psycopg.connect(blank_url) as conn:
        versions = conn.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert versions == [(m.version, m.name) for m in known_migrations()]

    # Readable through today's Store, as switchboard_app under row-level security.
    tenant, ended = ids["tenant"], ids["ended"]
    with Database(blank_url) as db:
        store = Store(db)
        assert store.tenant_for_api_key(API_KEY) == tenant
        assert store.tenant_by_name("acme") == tenant
        record = store.agent_for_number("+15550001111")
        assert record is not None and record.agent_id == ids["agent"]
        assert record.spec.greeting == "Hello from before"
        assert [e["seq"] for e in store.read_events(tenant, ended)] == [1, 2, 3]
        assert [(t.role, t.text) for t in store.read_turns(tenant, ended)] == [
            ("caller", "what are your hours"),
            ("agent", "nine to five"),
        ]
        with db.tenant(tenant) as cur:
            cur.execute("SELECT end_reason, turns FROM call_logs WHERE session_id = %s", (ended,))
            assert cur.fetchall() == [("hangup", 1)]
        # The pending call's token, issued before the upgrade, admits its own call once
        # (the baseline brought the CallSid-bound look-up), and a stranger's never.
        assert store.consume_admission(token_hash(ADMISSION), "CA-other") is None
        admitted = store.consume_admission(token_hash(ADMISSION), "CA2")
        assert admitted is not None and admitted.session_id == ids["pending"]
        # The new column is the app's to write, and another tenant cannot see it.
        with db.tenant(tenant) as cur:
            cur.execute(
                "UPDATE voice_sessions SET owner = 'instance-a' WHERE id = %s RETURNING owner",
                (ids["active"],),
            )
            assert cur.fetchall() == [("instance-a",)]
        with db.tenant(uuid4()) as cur:
            cur.execute("SELECT count(*) FROM voice_sessions WHERE owner IS NOT NULL")
            assert cur.fetchone() == (0,)
        store.append_events(tenant, ended, [EventRow(4, "call.ended", datetime.now(UTC), 1.0, {})])
        assert [e["seq"] for e in store.read_events(tenant, ended)] == [1, 2, 3, 4]


def test_rows_in_the_old_recordings_table_stop_version_4_and_are_kept(blank_url: str) -> None:
    """No release wrote version 1's `recordings`; if a database has rows there anyway,
    version 4 (which replaces the table) refuses by name and drops nothing."""
    ids = _previous_release_database(blank_url)
    with psycopg.connect(blank_url) as conn:
        conn.execute(
            "INSERT INTO recordings (session_id, tenant_id, track, sample_rate, encoding, data)"
            " VALUES (%s, %s, 'caller', 8000, 'ulaw', %s)",
            (ids["ended"], ids["tenant"], b"\xff" * 160),
        )
    with pytest.raises(StorageError, match=r"0004_recordings: the old recordings table holds"):
        migrate(blank_url)
    with psycopg.connect(blank_url) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (3,)
        assert conn.execute("SELECT track, data FROM recordings").fetchall() == [
            ("caller", b"\xff" * 160)
        ]


def test_the_owner_index_serves_the_active_calls_of_an_instance(blank_url: str) -> None:
    migrate(blank_url)
    with psycopg.connect(blank_url) as conn:
        (definition,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'voice_sessions_owner_active_idx'"
        ).fetchone() or (None,)
    assert definition is not None
    assert "(owner)" in definition and "WHERE (status = 'active'::text)" in definition


def test_migrating_twice_changes_nothing(blank_url: str) -> None:
    assert [m.version for m in migrate(blank_url)] == [m.version for m in known_migrations()]
    with psycopg.connect(blank_url) as conn:
        recorded = conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall()
    assert migrate(blank_url) == []
    with psycopg.connect(blank_url) as conn:
        assert conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall() == (
            recorded
        )
    state = schema_status(blank_url)
    assert state.pending == () and not state.unversioned
    assert [(r.version, r.name) for r in state.applied] == [
        (m.version, m.name) for m in known_migrations()
    ]


def test_concurrent_migrations_apply_each_version_once(blank_url: str) -> None:
    results: list[list[int] | BaseException] = []

    def run() -> None:
        try:
            results.append([m.version for m in migrate(blank_url)])
        except BaseException as exc:  # pragma: no cover - reported below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [m.version for m in known_migrations()]
    assert sorted(results, key=len) == [[], [], every]  # type: ignore[arg-type]


def test_an_edited_migration_is_refused_by_name(blank_url: str) -> None:
    migrate(blank_url)
    known = known_migrations()
    edited = tuple(
        replace(m, sql=m.sql + "\n-- an afterthought\n") if m.version == 2 else m for m in known
    )
    with pytest.raises(StorageError, match=r"migration 0002_session_owner .* edited") as caught:
        migrate(blank_url, edited)
    assert "new file" in str(caught.value)
    with pytest.raises(StorageError, match="0002_session_owner"):
        schema_status(blank_url, edited)
    baseline_edited = (replace(known[0], sql=known[0].sql + " "), *known[1:])
    with pytest.raises(StorageError, match=r"0001_baseline \(schema.sql\) was edited"):
        migrate(blank_url, baseline_edited)


def test_a_database_newer_than_the_code_is_refused(blank_url: str) -> None:
    migrate(blank_url)
    later = known_migrations()[-1].version + 1
    with psycopg.connect(blank_url) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, 'from_later', %s)",
            (later, "0" * 64),
        )
    with pytest.raises(StorageError, match=rf"version {later:04d}_from_later .* newer than this"):
        migrate(blank_url)
    with pytest.raises(StorageError, match=f"{later:04d}_from_later"):
        schema_status(blank_url)


def test_a_failing_migration_leaves_nothing_and_says_which(blank_url: str) -> None:
    n = known_migrations()[-1].version
    broken = Migration(n + 1, "broken", "ALTER TABLE tenants ADD COLUMN plan text; SELECT 1 / 0;")
    with pytest.raises(StorageError, match=rf"at version {n + 1:04d}_broken: division by zero"):
        migrate(blank_url, (*known_migrations(), broken))
    with psycopg.connect(blank_url) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (n,)
        column = conn.execute(
            "SELECT 1 FROM information_schema.columns"
            " WHERE table_name = 'tenants' AND column_name = 'plan'"
        ).fetchone()
    assert column is None
    assert [
        m.version
        for m in migrate(blank_url, (*known_migrations(), replace(broken, sql="SELECT 1")))
    ] == [n + 1]


def test_a_migration_added_below_the_newest_applied_is_refused(blank_url: str) -> None:
    n = known_migrations()[-1].version
    later = Migration(n + 2, "later", "SELECT 1")
    migrate(blank_url, (*known_migrations(), later))
    message = rf"{n + 1:04d}_earlier is older than the database's version {n + 2}"
    with pytest.raises(StorageError, match=message):
        migrate(blank_url, (*known_migrations(), Migration(n + 1, "earlier", "SELECT 1"), later))


# -- the pool


def _other_backends(url: str, what: str) -> list[tuple[object, ...]]:
    """``SELECT what`` over the other client connections to the database at ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            f"SELECT {what} FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchall()


def _backends_of(url: str) -> int:
    return len(_other_backends(url, "pid"))


def _terminate_backends(url: str) -> int:
    return len(_other_backends(url, "pg_terminate_backend(pid)"))


def test_every_idle_connection_killed_at_once_costs_the_next_call_nothing(
    database_url: str,
) -> None:
    """A PostgreSQL restart kills every pooled connection. The next call gets a new one at
    once: it does not try the dead ones one by one, each after a pause (psycopg_pool's own
    check-on-take backs off 1, 2, 4 s between them; 7 s for four)."""
    with Database(database_url, pool_size=8, timeout_s=2.0) as db:
        store = Store(db)
        tenant_id = store.ensure_tenant("acme")
        held = threading.Barrier(8)

        def hold() -> None:
            with db.anonymous():
                held.wait(timeout=10)

        threads = [threading.Thread(target=hold) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert _terminate_backends(database_url) == 8  # eight idle pooled connections
        assert store.tenant_by_name("acme") == tenant_id
        assert store.ensure_tenant("acme") == tenant_id


def test_a_connection_killed_in_a_transaction_fails_that_call_only(database_url: str) -> None:
    with Database(database_url, pool_size=2) as db:
        store = Store(db)
        tenant_id = store.ensure_tenant("acme")
        with pytest.raises(StorageError, match="terminat"), db.anonymous() as cur:
            _terminate_backends(database_url)
            cur.execute("SELECT 1")
        assert store.ensure_tenant("acme") == tenant_id


def test_a_full_pool_is_a_storage_error_that_says_so(database_url: str) -> None:
    with Database(database_url, pool_size=1, timeout_s=0.5) as db:
        with db.anonymous(), pytest.raises(StorageError) as caught, db.anonymous():
            pass
        assert str(caught.value) == (
            "no free database connection within 0.5 s: all 1 of this process are in use"
            " (DB_POOL_SIZE)"
        )
        with db.anonymous() as cur:  # given back: usable again
            cur.execute("SELECT 1")


def test_an_unreachable_server_fails_fast_with_its_reason() -> None:
    """While PostgreSQL refuses connections a call fails at once with the reason, not after
    the whole timeout: the webhook and /ready answer while the database is away."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with Database(f"postgresql://nobody@127.0.0.1:{port}/none", timeout_s=60.0) as db:
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(StorageError, match=r"cannot connect to PostgreSQL: .*refused"):
                Store(db).ping()
        assert time.monotonic() - started < 30  # three calls in less than half of one timeout


def test_the_pool_recovers_by_itself_when_postgresql_comes_back(
    pg_server: EmbeddedPostgres, database_url: str, tmp_path: Path
) -> None:
    """The pool is made while nothing listens at its socket path (a server down at start)
    and connects once the server is there, with no restart of the pool."""
    params = conninfo_to_dict(database_url)
    port = int(str(params.get("port") or 5432))
    socket_dir = tmp_path / "sock"
    socket_dir.mkdir()
    url = make_conninfo(database_url, host=str(socket_dir))
    with Database(url, timeout_s=5.0) as db:
        store = Store(db)
        with pytest.raises(StorageError, match="cannot connect to PostgreSQL"):
            store.ping()
        # PostgreSQL "comes back": its socket appears where the pool looks.
        (socket_dir / f".s.PGSQL.{port}").symlink_to(Path(str(params["host"])) / f".s.PGSQL.{port}")
        _until_it_answers(store, within_s=20)  # the pool retries 1 s, then 2 s apart
        assert store.ensure_tenant("acme") == store.tenant_by_name("acme")


def _until_it_answers(store: Store, within_s: float) -> None:
    """Ping until PostgreSQL answers through the pool; fail after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            store.ping()
            return
        except StorageError:
            assert time.monotonic() < deadline, "the pool did not reconnect"
            time.sleep(0.1)


def test_the_pool_comes_through_a_postgresql_restart() -> None:
    """A real stop and start of the server (its own folder; the shared one stays up)."""
    # Not pytest's tmp_path: started as root, pgserver opens the folder's parents to others.
    with tempfile.TemporaryDirectory(prefix="switchboard-test-pg-") as folder:
        pg = start_embedded(Path(folder))
        try:
            migrate(pg.uri)
            with Database(pg.uri, timeout_s=5.0) as db:
                store = Store(db)
                tenant_id = store.ensure_tenant("acme")
                pg.stop()
                with pytest.raises(StorageError, match="PostgreSQL"):
                    store.ping()
                pg = start_embedded(Path(folder))
                _until_it_answers(store, within_s=20)  # the pool retries 1 s, then 2 s apart
                assert store.tenant_by_name("acme") == tenant_id
        finally:
            pg.stop()


def test_connections_run_as_the_app_role_in_utc(database: Database) -> None:
    with database.anonymous() as cur:
        cur.execute("SELECT current_user, current_setting('TimeZone')")
        assert cur.fetchone() == ("switchboard_app", "UTC")


def test_a_closed_pool_refuses_with_a_storage_error(database_url: str) -> None:
    db = Database(database_url)
    db.close()
    db.close()
    with pytest.raises(StorageError, match="closed"), db.anonymous():
        pass


def test_calls_one_after_another_reuse_a_connection(database_url: str) -> None:
    with Database(database_url, pool_size=8) as db:
        store = Store(db)
        for _ in range(20):
            store.ping()
        # Not one per call: the pool hands back the same connection, or a second one
        # when a call came while the last was still being returned (a busy machine).
        assert 1 <= _backends_of(database_url) <= 2


# -- the commands and the settings


def test_db_status_and_migrate_say_what_they_find_and_do(
    blank_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _previous_release_database(blank_url)
    monkeypatch.setenv("DATABASE_URL", blank_url)
    assert cli.main(["db", "status"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "the tables were made before versioned migrations: 0001 is applied again",
        "pending 0001_baseline",
        "pending 0002_session_owner",
        "pending 0003_recovery",
        "pending 0004_recordings",
        "pending 0005_agent_versions",
        "pending 0006_knowledge",
        "pending 0007_tenant_tools",
        "pending 0008_post_call",
        "pending 0009_runtime_config",
    ]
    assert cli.main(["db", "migrate"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "applied 0001_baseline",
        "applied 0002_session_owner",
        "applied 0003_recovery",
        "applied 0004_recordings",
        "applied 0005_agent_versions",
        "applied 0006_knowledge",
        "applied 0007_tenant_tools",
        "applied 0008_post_call",
        "applied 0009_runtime_config",
    ]
    assert cli.main(["db", "migrate"]) == 0
    assert capsys.readouterr().out == "the schema is up to date\n"
    assert cli.main(["db", "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[:9]] == [
        ["applied", "0001_baseline"],
        ["applied", "0002_session_owner"],
        ["applied", "0003_recovery"],
        ["applied", "0004_recordings"],
        ["applied", "0005_agent_versions"],
        ["applied", "0006_knowledge"],
        ["applied", "0007_tenant_tools"],
        ["applied", "0008_post_call"],
        ["applied", "0009_runtime_config"],
    ]
    assert lines[9:] == ["the schema is up to date"]
    with psycopg.connect(blank_url) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'later', %s)",
            ("0" * 64,),
        )
    assert cli.main(["db", "migrate"]) == 1
    assert "0099_later" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("workers", "total", "parent", "worker"),
    [(1, 20, 20, 20), (2, 20, 2, 9), (8, 20, 2, 2), (4, 50, 2, 12)],
)
def test_db_pool_size_is_the_whole_servers(
    workers: int, total: int, parent: int, worker: int
) -> None:
    settings = Settings.from_env({"DB_POOL_SIZE": str(total)}, workers=workers)
    assert settings.database_pool_size(parent=True) == parent
    if workers > 1:
        assert settings.database_pool_size(parent=False) == worker
        assert parent + workers * worker <= max(total, 2 + 2 * workers)
