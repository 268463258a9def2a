"""The Store against a real PostgreSQL: keys, agents, admissions, sessions, event logs."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest

from switchboard.orchestrator.agents import AgentSpec, Intent
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.errors import ConfigError, StorageError
from switchboard.orchestrator.store import Admission, EventRow, Store, Turn, token_hash

T0 = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)


def _agent(tenant: str = "acme", *numbers: str, name: str = "desk") -> AgentSpec:
    return AgentSpec(
        name=name,
        tenant=tenant,
        greeting="Hello",
        intents=(Intent("bye", ("bye",), "Bye!", "hangup_call"),),
        phone_numbers=numbers,
    )


def _session(store: Store, **kwargs: object) -> tuple[UUID, UUID, UUID]:
    agent_id = store.apply_agent(_agent("acme", "+15550000001"))
    tenant_id = store.ensure_tenant("acme")
    session_id = store.create_session(tenant_id, agent_id, transport="twilio", **kwargs)  # type: ignore[arg-type]
    return tenant_id, agent_id, session_id


def _event(seq: int, type_: str = "audio.in", **payload: object) -> EventRow:
    return EventRow(seq, type_, T0 + timedelta(milliseconds=20 * seq), 20.0 * seq, payload)


# -- tenants and API keys


def test_ensure_tenant_is_idempotent(store: Store) -> None:
    acme = store.ensure_tenant("acme")
    assert store.ensure_tenant("acme") == acme
    assert store.ensure_tenant("bravo") != acme


def test_api_key_is_returned_once_and_only_its_hash_is_stored(
    store: Store, database_url: str
) -> None:
    tenant_id = store.ensure_tenant("acme")
    key = store.create_api_key(tenant_id)
    assert key.startswith("sb_") and len(key) == 35
    with psycopg.connect(database_url) as owner:
        rows = owner.execute("SELECT key_hash, prefix, tenant_id FROM api_keys").fetchall()
    assert rows == [(hashlib.sha256(key.encode()).hexdigest(), key[:8], tenant_id)]
    assert store.tenant_for_api_key(key) == tenant_id
    assert store.create_api_key(tenant_id) != key


def test_unknown_and_revoked_keys_are_refused(store: Store) -> None:
    tenant_id = store.ensure_tenant("acme")
    key = store.create_api_key(tenant_id)
    other = store.create_api_key(tenant_id)
    assert store.tenant_for_api_key("sb_" + "x" * 32) is None
    assert store.tenant_for_api_key(key[3:]) is None
    assert store.revoke_api_key(tenant_id, key) is True
    assert store.revoke_api_key(tenant_id, key) is False
    assert store.tenant_for_api_key(key) is None
    assert store.tenant_for_api_key(other) == tenant_id


def test_a_tenant_cannot_revoke_another_tenants_key(store: Store) -> None:
    acme, bravo = store.ensure_tenant("acme"), store.ensure_tenant("bravo")
    key = store.create_api_key(acme)
    assert store.revoke_api_key(bravo, key) is False
    assert store.tenant_for_api_key(key) == acme


# -- agents and phone numbers


def test_apply_agent_upserts_and_replaces_numbers(store: Store) -> None:
    spec = _agent("acme", "+15550000001", "+15550000002")
    agent_id = store.apply_agent(spec)
    record = store.agent_for_number("+15550000002")
    assert record is not None
    assert (record.agent_id, record.spec) == (agent_id, spec)
    assert record.tenant_id == store.ensure_tenant("acme")

    changed = replace(spec, greeting="Good morning", phone_numbers=("+15550000002", "+15550000003"))
    assert store.apply_agent(changed) == agent_id
    assert store.get_agent(record.tenant_id, agent_id) == changed
    assert store.agent_for_number("+15550000001") is None
    for number in ("+15550000002", "+15550000003"):
        found = store.agent_for_number(number)
        assert found is not None and found.agent_id == agent_id


def test_a_number_moves_between_agents_of_one_tenant(store: Store) -> None:
    first = store.apply_agent(_agent("acme", "+15550000001", name="desk"))
    second = store.apply_agent(_agent("acme", "+15550000001", name="night"))
    assert first != second
    record = store.agent_for_number("+15550000001")
    assert record is not None and record.agent_id == second


def test_a_number_of_another_tenant_is_a_config_error_and_changes_nothing(store: Store) -> None:
    acme_agent = store.apply_agent(_agent("acme", "+15550000001"))
    with pytest.raises(ConfigError, match=r"phone number \+15550000001 already belongs"):
        store.apply_agent(_agent("bravo", "+15550000002", "+15550000001", name="thief"))
    record = store.agent_for_number("+15550000001")
    assert record is not None and record.agent_id == acme_agent
    assert store.agent_for_number("+15550000002") is None


def test_unknown_number_has_no_agent(store: Store) -> None:
    assert store.agent_for_number("+15559999999") is None


# -- admissions


def test_admission_token_opens_its_session_once(store: Store) -> None:
    tenant_id, agent_id, session_id = _session(store, admission_hash=token_hash("tok"))
    assert store.consume_admission(token_hash("tok"), None) == Admission(
        session_id, tenant_id, agent_id
    )
    assert store.consume_admission(token_hash("tok"), None) is None
    assert store.consume_admission(token_hash("never issued"), None) is None


def test_admission_token_is_bound_to_its_call_sid(store: Store) -> None:
    """Issue 11: a stream whose `start` named another CallSid was admitted; now it gets
    nothing, and the token is still good for the call it was issued to."""
    _, _, session_id = _session(store, admission_hash=token_hash("tok"), call_sid="CA1")
    assert store.consume_admission(token_hash("tok"), "CA2") is None
    assert store.consume_admission(token_hash("tok"), None) is None
    admitted = store.consume_admission(token_hash("tok"), "CA1")
    assert admitted is not None and admitted.session_id == session_id


def test_racing_threads_admit_exactly_once(store: Store) -> None:
    racers = 4
    for n in range(10):
        token = f"tok{n}"
        _, _, session_id = _session(store, admission_hash=token_hash(token))
        barrier = threading.Barrier(racers)
        results: list[Admission | None] = []
        lock = threading.Lock()

        def race(
            token: str = token,
            barrier: threading.Barrier = barrier,
            results: list[Admission | None] = results,
            lock: threading.Lock = lock,
        ) -> None:
            barrier.wait()
            result = store.consume_admission(token_hash(token), None)
            with lock:
                results.append(result)

        threads = [threading.Thread(target=race) for _ in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == racers
        assert [r.session_id for r in results if r is not None] == [session_id]


def test_expired_admission_token_is_refused(store: Store, database_url: str) -> None:
    _, _, session_id = _session(store, admission_hash=token_hash("tok"), admission_ttl_s=60)
    with psycopg.connect(database_url) as owner:
        owner.execute(
            "UPDATE voice_sessions SET admission_expires_at = now() - interval '1 second'"
            " WHERE id = %s",
            (session_id,),
        )
    assert store.consume_admission(token_hash("tok"), None) is None


def test_zero_ttl_admission_is_already_expired(store: Store) -> None:
    _session(store, admission_hash=token_hash("tok"), admission_ttl_s=0)
    assert store.consume_admission(token_hash("tok"), None) is None


def test_an_admission_hash_is_unique(store: Store) -> None:
    _session(store, admission_hash=token_hash("tok"))
    with pytest.raises(StorageError, match="duplicate key"):
        _session(store, admission_hash=token_hash("tok"))


# -- sessions


def test_session_lifecycle(store: Store, database_url: str) -> None:
    tenant_id, agent_id, session_id = _session(store, call_sid="CA1", to_number="+15550000001")
    store.mark_session(tenant_id, session_id, status="active", stream_sid="MZ1")
    store.mark_session(tenant_id, session_id, status="active")
    ended = T0 + timedelta(seconds=42, milliseconds=5)
    for _ in range(2):
        store.finish_session(
            tenant_id,
            session_id,
            end_reason="caller_hung_up",
            turns=3,
            started_at=T0,
            ended_at=ended,
        )
    with psycopg.connect(database_url) as owner:
        session = owner.execute(
            "SELECT status, stream_sid, call_sid, started_at IS NOT NULL, ended_at IS NOT NULL"
            " FROM voice_sessions WHERE id = %s",
            (session_id,),
        ).fetchone()
        logs = owner.execute(
            "SELECT agent_id, duration_ms, turns, end_reason, summary FROM call_logs"
        ).fetchall()
    assert session == ("ended", "MZ1", "CA1", True, True)
    assert logs == [(agent_id, 42005, 3, "caller_hung_up", {})]


def test_a_failed_session_stays_failed(store: Store, database_url: str) -> None:
    tenant_id, _, session_id = _session(store)
    store.mark_session(tenant_id, session_id, status="failed")
    store.finish_session(
        tenant_id, session_id, end_reason="provider_failed", turns=0, started_at=T0, ended_at=T0
    )
    with psycopg.connect(database_url) as owner:
        row = owner.execute("SELECT status FROM voice_sessions").fetchone()
    assert row == ("failed",)


def test_unknown_session_and_bad_arguments(store: Store) -> None:
    tenant_id, agent_id, _ = _session(store)
    with pytest.raises(StorageError, match="has no session"):
        store.mark_session(tenant_id, uuid4(), status="active")
    with pytest.raises(StorageError, match="has no session"):
        store.finish_session(
            tenant_id, uuid4(), end_reason="x", turns=0, started_at=T0, ended_at=T0
        )
    with pytest.raises(StorageError, match="foreign key"):
        store.create_session(tenant_id, uuid4(), transport="twilio")
    with pytest.raises(ValueError, match="transport"):
        store.create_session(tenant_id, agent_id, transport="carrier-pigeon")
    with pytest.raises(ValueError, match="status"):
        store.mark_session(tenant_id, agent_id, status="paused")


# -- events


def test_retried_batches_do_not_duplicate_events(store: Store) -> None:
    tenant_id, _, session_id = _session(store)
    batch = [
        _event(1, "call.started"),
        _event(2, "turn:user", text="what are your opening hours"),
        _event(3, "tool.call", name="lookup_hours", args={"day": None}),
        _event(4, "turn:agent", text="We are open today."),
    ]
    store.append_events(tenant_id, session_id, batch)
    store.append_events(tenant_id, session_id, batch)
    store.append_events(tenant_id, session_id, [*batch[2:], _event(5, "call.ended")])
    store.append_events(tenant_id, session_id, [])

    events = store.read_events(tenant_id, session_id)
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[2] == {
        "seq": 3,
        "type": "tool.call",
        "ts": "2025-03-04T09:30:00.060000+00:00",
        "t_ms": 60.0,
        "payload": {"name": "lookup_hours", "args": {"day": None}},
    }
    assert store.read_turns(tenant_id, session_id) == [
        Turn(2, "caller", "what are your opening hours", T0 + timedelta(milliseconds=40)),
        Turn(4, "agent", "We are open today.", T0 + timedelta(milliseconds=80)),
    ]


def test_events_come_back_in_seq_order(store: Store) -> None:
    tenant_id, _, session_id = _session(store)
    store.append_events(tenant_id, session_id, [_event(3), _event(1)])
    store.append_events(tenant_id, session_id, [_event(2), _event(0)])
    assert [e["seq"] for e in store.read_events(tenant_id, session_id)] == [0, 1, 2, 3]


def test_a_failed_batch_writes_nothing(store: Store) -> None:
    tenant_id, _, session_id = _session(store)
    with pytest.raises(StorageError):
        store.append_events(tenant_id, uuid4(), [_event(1)])
    store.append_events(tenant_id, session_id, [_event(1)])
    with pytest.raises(StorageError, match="out of range"):
        store.append_events(tenant_id, session_id, [_event(2), EventRow(2**63, "x", T0, 0.0, {})])
    with pytest.raises(ValueError, match=r"payload of event 3 \(audio.in\) is not JSON"):
        store.append_events(tenant_id, session_id, [_event(2), _event(3, bad=object())])
    with pytest.raises(ValueError, match="is not JSON"):
        store.append_events(tenant_id, session_id, [_event(2), _event(3, level=float("nan"))])
    assert [e["seq"] for e in store.read_events(tenant_id, session_id)] == [1]


def test_event_rows_are_checked() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        EventRow(1, "x", datetime(2025, 1, 1), 0.0, {})
    with pytest.raises(ValueError, match="seq"):
        EventRow(-1, "x", T0, 0.0, {})
    with pytest.raises(ValueError, match=r"payload\['text'\]"):
        EventRow(1, "turn:user", T0, 0.0, {})


# -- the pool


def test_pool_reconnects_after_the_server_drops_its_connections(
    store: Store, database: Database, database_url: str
) -> None:
    tenant_id = store.ensure_tenant("acme")
    with psycopg.connect(database_url, autocommit=True) as owner:
        owner.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = 'postgres' AND datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
    assert store.ensure_tenant("acme") == tenant_id


def test_unreachable_server_is_a_storage_error(tmp_path: Path) -> None:
    with (
        Database(f"host={tmp_path} dbname=nothing", timeout_s=1) as db,
        pytest.raises(StorageError, match="cannot connect"),
        db.anonymous(),
    ):
        pass


def test_pool_is_shared_by_threads(store: Store, database: Database) -> None:
    tenant_id, _, session_id = _session(store)
    errors: list[BaseException] = []

    def write(start: int) -> None:
        try:
            store.append_events(tenant_id, session_id, [_event(start + i) for i in range(10)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(10 * t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [e["seq"] for e in store.read_events(tenant_id, session_id)] == list(range(80))
