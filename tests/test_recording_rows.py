"""The ``recordings`` rows against a real PostgreSQL: life cycle, shredding, tenancy, sweep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from switchboard.orchestrator import cli
from switchboard.orchestrator.agents import AgentSpec, Intent
from switchboard.orchestrator.errors import StorageError
from switchboard.orchestrator.recording_rows import (
    NewRecording,
    create_recording,
    expired_recordings,
    finish_recording,
    get_recording,
    set_tenant_public_key,
    shred_recording,
    tenant_public_key,
)
from switchboard.orchestrator.recording_store import object_key
from switchboard.orchestrator.store import Store

WRAPPED = b"\x01wrapped data key\xff" * 3


def _call(store: Store, tenant: str) -> tuple[UUID, UUID]:
    agent_id = store.apply_agent(
        AgentSpec(
            name="desk",
            tenant=tenant,
            greeting="Hello",
            intents=(Intent("bye", ("bye",), "Bye!", "hangup_call"),),
        )
    )
    tenant_id = store.ensure_tenant(tenant)
    return tenant_id, store.create_session(tenant_id, agent_id, transport="twilio")


def _new(tenant_id: UUID, session_id: UUID, **fields: object) -> NewRecording:
    values: dict[str, object] = {
        "object_key": object_key(tenant_id, session_id),
        "key_kind": "keyring",
        "kid": "k1",
        "wrapped_key": WRAPPED,
        "caller_encoding": "ulaw",
        "caller_sample_rate": 8000,
        "agent_encoding": "ulaw",
        "agent_sample_rate": 8000,
        "retention_days": 30,
        **fields,
    }
    return NewRecording(tenant_id, session_id, **values)  # type: ignore[arg-type]


def test_a_recording_from_start_to_finish(store: Store) -> None:
    tenant_id, session_id = _call(store, "acme")
    made = create_recording(store, _new(tenant_id, session_id))
    assert (made.status, made.key_kind, made.kid, made.wrapped_key) == (
        "recording",
        "keyring",
        "k1",
        WRAPPED,
    )
    assert (made.size_bytes, made.duration_ms, made.finished_at, made.deleted_at) == (
        None,
        None,
        None,
        None,
    )
    assert made.expires_at is not None
    assert made.expires_at - made.created_at == timedelta(days=30)
    assert not made.playable
    done = finish_recording(
        store, tenant_id, session_id, status="complete", size_bytes=4096, duration_ms=61_250
    )
    assert done is not None and done.playable
    assert (done.status, done.size_bytes, done.duration_ms) == ("complete", 4096, 61_250)
    assert done.recording_id == made.recording_id
    assert get_recording(store, tenant_id, session_id) == done
    # Finishing again changes nothing (the first answer stands).
    again = finish_recording(
        store, tenant_id, session_id, status="truncated", size_bytes=1, duration_ms=1
    )
    assert again is None
    assert get_recording(store, tenant_id, session_id) == done


def test_one_recording_per_call_and_only_of_the_tenants_own_call(store: Store) -> None:
    tenant_id, session_id = _call(store, "acme")
    other_tenant, other_session = _call(store, "bravo")
    create_recording(store, _new(tenant_id, session_id))
    with pytest.raises(StorageError, match="duplicate key"):
        create_recording(store, _new(tenant_id, session_id))
    with pytest.raises(StorageError):  # acme cannot hang a row on bravo's call
        create_recording(store, _new(tenant_id, other_session))
    with pytest.raises(StorageError, match="no recording"):
        finish_recording(
            store, other_tenant, other_session, status="complete", size_bytes=1, duration_ms=1
        )


def test_no_tenant_reads_or_changes_another_tenants_recording(
    store: Store, database_url: str
) -> None:
    acme, acme_call = _call(store, "acme")
    bravo, bravo_call = _call(store, "bravo")
    create_recording(store, _new(acme, acme_call))
    create_recording(store, _new(bravo, bravo_call, kid="k2"))
    assert get_recording(store, bravo, acme_call) is None
    assert shred_recording(store, bravo, acme_call) is None
    assert (
        finish_recording(store, acme, acme_call, status="complete", size_bytes=9, duration_ms=9)
        is not None
    )
    with pytest.raises(StorageError):
        finish_recording(store, bravo, acme_call, status="complete", size_bytes=1, duration_ms=1)
    with store.db.tenant(bravo) as cur:
        cur.execute("SELECT session_id, kid FROM recordings")
        assert cur.fetchall() == [(bravo_call, "k2")]
        cur.execute("UPDATE recordings SET kid = 'stolen' WHERE session_id = %s", (acme_call,))
        assert cur.rowcount == 0
    with store.db.anonymous() as cur:
        cur.execute("SELECT count(*) FROM recordings")
        assert cur.fetchone() == (0,)
    with psycopg.connect(database_url) as owner:  # the owner sees both, unchanged
        rows = owner.execute("SELECT kid, status FROM recordings ORDER BY kid").fetchall()
    assert rows == [("k1", "complete"), ("k2", "recording")]


def test_the_app_role_cannot_delete_rows(store: Store) -> None:
    tenant_id, session_id = _call(store, "acme")
    create_recording(store, _new(tenant_id, session_id))
    with pytest.raises(StorageError, match="permission denied"), store.db.tenant(tenant_id) as cur:
        cur.execute("DELETE FROM recordings")


def test_shredding_nulls_the_wrapped_key_once_and_keeps_the_row(
    store: Store, database_url: str
) -> None:
    tenant_id, session_id = _call(store, "acme")
    create_recording(store, _new(tenant_id, session_id))
    first = shred_recording(store, tenant_id, session_id)
    assert first is not None
    assert (first.status, first.wrapped_key) == ("deleted", None)
    assert first.deleted_at is not None and not first.playable
    assert first.object_key == object_key(tenant_id, session_id)  # for the object's deletion
    second = shred_recording(store, tenant_id, session_id)
    assert second == first  # idempotent: the first deletion's time stays
    with psycopg.connect(database_url) as owner:  # not even the owner has the key now
        assert owner.execute("SELECT wrapped_key FROM recordings").fetchall() == [(None,)]
    # A recording shredded while its call ran is not brought back by the call's end.
    assert (
        finish_recording(
            store, tenant_id, session_id, status="complete", size_bytes=1, duration_ms=1
        )
        is None
    )
    assert get_recording(store, tenant_id, session_id) == first


def test_a_deleted_row_cannot_keep_a_key(store: Store) -> None:
    tenant_id, session_id = _call(store, "acme")
    create_recording(store, _new(tenant_id, session_id))
    with pytest.raises(StorageError, match="check constraint"), store.db.tenant(tenant_id) as cur:
        cur.execute("UPDATE recordings SET status = 'deleted', deleted_at = now()")


def test_expired_recordings_of_every_tenant_oldest_first(store: Store, database_url: str) -> None:
    acme, a1 = _call(store, "acme")
    bravo, b1 = _call(store, "bravo")
    _, a2 = _call(store, "acme")
    _, a3 = _call(store, "acme")
    _, a4 = _call(store, "acme")
    for tenant, session in ((acme, a1), (bravo, b1), (acme, a2), (acme, a3), (acme, a4)):
        create_recording(store, _new(tenant, session))
        if session != a4:
            finish_recording(store, tenant, session, status="complete", size_bytes=1, duration_ms=1)
    create_recording_without_retention = _call(store, "acme")
    create_recording(store, _new(*create_recording_without_retention, retention_days=None))
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as owner:
        for session, expires in (
            (a1, now - timedelta(hours=1)),
            (b1, now - timedelta(hours=2)),
            (a2, now + timedelta(hours=1)),  # not yet
            (a4, now - timedelta(hours=3)),  # still 'recording': left for a day
        ):
            owner.execute(
                "UPDATE recordings SET expires_at = %s WHERE session_id = %s", (expires, session)
            )
    shred_recording(store, acme, a3)
    owner_set = [(r.tenant_id, r.session_id) for r in expired_recordings(store, now)]
    assert owner_set == [(bravo, b1), (acme, a1)]
    assert [r.session_id for r in expired_recordings(store, now, limit=1)] == [b1]
    later = [r.session_id for r in expired_recordings(store, now + timedelta(days=1))]
    assert later == [a4, b1, a1, a2]


def test_a_tenants_public_key_is_set_and_cleared_for_that_tenant_only(store: Store) -> None:
    acme, _ = _call(store, "acme")
    bravo, _ = _call(store, "bravo")
    pem = b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"
    assert tenant_public_key(store, acme) is None
    set_tenant_public_key(store, acme, pem)
    assert tenant_public_key(store, acme) == pem
    assert tenant_public_key(store, bravo) is None
    with pytest.raises(StorageError, match="no tenant"):
        set_tenant_public_key(store, uuid4(), pem)
    with pytest.raises(StorageError, match="check constraint"):
        set_tenant_public_key(store, acme, b"not a key")
    set_tenant_public_key(store, acme, None)
    assert tenant_public_key(store, acme) is None


# -- the command


def _pem(tmp_path: Path, name: str, key: object, private: bool = False) -> Path:
    path = tmp_path / name
    if private:
        data = key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        data = key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    path.write_bytes(data)
    return path


def test_the_command_sets_and_clears_a_tenants_recording_key(
    store: Store,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    acme, _ = _call(store, "acme")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = _pem(tmp_path, "acme.pub.pem", key)
    assert cli.main(["tenant", "set-recording-key", "acme", "--public-key", str(public)]) == 0
    assert "encrypted for the RSA key sha256:" in capsys.readouterr().out
    assert tenant_public_key(store, acme) == public.read_bytes()
    assert cli.main(["tenant", "set-recording-key", "nobody", "--public-key", str(public)]) == 1
    assert "no tenant 'nobody'" in capsys.readouterr().err
    assert cli.main(["tenant", "set-recording-key", "acme", "--clear"]) == 0
    assert tenant_public_key(store, acme) is None
    capsys.readouterr()
    refused = [
        (_pem(tmp_path, "private.pem", key, private=True), "private key"),
        (_pem(tmp_path, "ec.pem", ec.generate_private_key(ec.SECP256R1())), "RSA public key"),
        (
            _pem(
                tmp_path,
                "short.pem",
                rsa.generate_private_key(public_exponent=65537, key_size=1024),
            ),
            "1024 bits",
        ),
        (tmp_path / "missing.pem", "No such file"),
    ]
    (tmp_path / "junk.pem").write_text("hello")
    refused.append((tmp_path / "junk.pem", "not a PEM public key"))
    for path, words in refused:
        assert cli.main(["tenant", "set-recording-key", "acme", "--public-key", str(path)]) == 2
        assert words in capsys.readouterr().err, path
    assert tenant_public_key(store, acme) is None
    # `tenant create` still works beside the new subcommand.
    assert cli.main(["tenant", "create", "charlie"]) == 0
    assert store.tenant_by_name("charlie") is not None
