"""``POST /v1/sessions`` and the tenant/key commands: keys hashed, tokens as the issue says."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from uuid import UUID

import jwt
import pytest
import structlog
import trio
from browser_support import KEYRING, start_harness

from switchboard.orchestrator import cli
from switchboard.orchestrator.store import Store
from switchboard.orchestrator.tokens import verify


@pytest.fixture
async def h(
    store: Store,
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
):  # type: ignore[no-untyped-def]
    return await start_harness(nursery, store, database_url, tmp_path, monkeypatch)


async def test_a_session_row_and_a_token_with_every_claim(h) -> None:  # type: ignore[no-untyped-def]
    response = await h.post_session(
        {"agent_id": str(h.agent_id), "conversation_id": "conv-7", "test_mode": False}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"session_id", "token", "expires_at", "ws_url", "mode", "mode_source"}
    assert (body["mode"], body["mode_source"]) == ("local", "agent")
    assert body["ws_url"] == h.ws_url + "/v1/voice"
    token = body["token"]
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    claims = jwt.decode(token, KEYRING.secrets["k1"], algorithms=["HS256"], issuer="switchboard")
    assert set(claims) == {
        *("iss", "sub", "agent_id", "tenant_id", "conversation_id", "mode", "test_mode"),
        *("mode_source", "exp", "iat", "jti"),
    }
    assert claims["sub"] == body["session_id"]
    assert (claims["agent_id"], claims["tenant_id"]) == (str(h.agent_id), str(h.tenant_id))
    assert (claims["conversation_id"], claims["mode"], claims["test_mode"]) == (
        "conv-7",
        "local",  # the receptionist's own mode
        False,
    )
    assert claims["exp"] - claims["iat"] == 300 and abs(claims["iat"] - time.time()) < 5
    assert body["expires_at"] == claims["exp"]
    assert verify(KEYRING, token).session_id == UUID(body["session_id"])
    assert h.rows(
        "select tenant_id, agent_id, transport, status from voice_sessions where id = %s",
        body["session_id"],
    ) == [(h.tenant_id, h.agent_id, "browser", "pending")]


async def test_agent_by_name_test_mode_and_mode(h) -> None:  # type: ignore[no-untyped-def]
    by_name = await h.new_session(agent_id="receptionist", test_mode=True)
    claims = jwt.decode(by_name["token"], options={"verify_signature": False})
    assert (claims["agent_id"], claims["mode"], claims["test_mode"]) == (
        str(h.agent_id),
        "local",
        True,
    )
    tokens = [by_name["token"], (await h.new_session())["token"]]
    assert len({jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}) == 2
    response = await h.post_session({"agent_id": "receptionist", "mode": "openai-realtime"})
    assert response.status_code == 422 and "openai-realtime" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "JSON object"),
        ({}, "agent_id"),
        ({"agent_id": 5}, "agent_id"),
        ({"agent_id": "receptionist", "test_mode": "yes"}, "test_mode"),
        ({"agent_id": "receptionist", "conversation_id": ""}, "conversation_id"),
        ({"agent_id": "receptionist", "mode": "carrier-pigeon"}, "mode"),
        ({"agent_id": "receptionist", "tenant_id": "x"}, "unknown field"),
        # Issue 11: a 1 MB agent_id (or field name) was echoed back whole.
        ({"agent_id": "x" * 1_000_000}, "at most 200 characters"),
        ({"agent_id": "receptionist", "y" * 1_000_000: 1}, "unknown field"),
    ],
)
async def test_malformed_bodies_are_400_and_create_nothing(h, body, words) -> None:  # type: ignore[no-untyped-def]
    response = await h.post_session(body)
    assert response.status_code == 400 and words in response.json()["error"]
    assert len(response.content) < 1000  # the input is named, not echoed back
    assert h.rows("select count(*) from voice_sessions") == [(0,)]


async def test_keys_unknown_agents_and_other_tenants_agents(h, store: Store) -> None:  # type: ignore[no-untyped-def]
    with structlog.testing.capture_logs() as logs:
        assert (
            await h.post_session({"agent_id": "receptionist"}, key="sb_nope")
        ).status_code == 401
    assert [e["event"] for e in logs] == ["auth.rejected"]
    assert (await h.post_session({"agent_id": "nobody"})).status_code == 404
    assert (await h.post_session({"agent_id": str(UUID(int=1))})).status_code == 404
    bravo = await trio.to_thread.run_sync(store.ensure_tenant, "bravo")
    bravo_key = await trio.to_thread.run_sync(store.create_api_key, bravo)
    other = await h.post_session({"agent_id": str(h.agent_id)}, key=bravo_key)
    assert other.status_code == 404  # acme's agent is invisible to bravo
    assert h.rows("select count(*) from voice_sessions") == [(0,)]


async def test_draining_refuses_new_sessions_and_ready_says_so(h) -> None:  # type: ignore[no-untyped-def]
    import httpx

    async with httpx.AsyncClient() as client:
        assert (await client.get(h.url + "/ready")).status_code == 200
        h.rt.draining = True
        ready = await client.get(h.url + "/ready")
        assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
        assert (await client.get(h.url + "/health")).status_code == 200  # still alive
    assert (await h.post_session({"agent_id": "receptionist"})).status_code == 503
    assert h.rows("select count(*) from voice_sessions") == [(0,)]


def test_tenant_and_key_commands_print_the_key_once_and_store_its_hash(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], store: Store
) -> None:
    env = ["--data-dir", str(tmp_path)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", database_url)
        assert cli.main(["tenant", "create", "acme", *env]) == 0
        first = capsys.readouterr().out.strip().splitlines()[-1]
        assert cli.main(["key", "create", "acme", *env]) == 0
        second = capsys.readouterr().out.strip().splitlines()[-1]
        assert cli.main(["tenant", "create", "acme", *env]) == 1
        assert "exists" in capsys.readouterr().err
        assert cli.main(["key", "create", "nobody", *env]) == 1
    acme = store.tenant_by_name("acme")
    assert acme is not None and first != second
    assert store.tenant_for_api_key(first) == acme == store.tenant_for_api_key(second)
    import psycopg

    with psycopg.connect(database_url) as conn:
        stored = {r[0] for r in conn.execute("select key_hash from api_keys").fetchall()}
    assert stored == {hashlib.sha256(k.encode()).hexdigest() for k in (first, second)}
