"""Session tokens at the WebSocket handshake: the issue's matrix over each carrier, and rotation.

A real server on loopback, a real PostgreSQL, real WebSocket clients. For
every refused token: the handshake gets 401 or 403 and a reason, one
``auth.rejected`` line is logged (without the token), and nothing changes:
no session row, no event, no spent jti, no call started.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import structlog
import trio
import trio_websocket
from browser_support import KEYRING, Harness, b64, connect_args, messages, start_harness

from switchboard.actors.local.tts import synthesize_at
from switchboard.orchestrator.store import Store
from switchboard.orchestrator.tokens import Keyring, mint
from switchboard.orchestrator.ws_auth import find_tokens

CARRIERS = ("subprotocol", "authorization", "query")


def _b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def _sign(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{_b64url(header)}.{_b64url(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _remint(valid: str, keyring: Keyring = KEYRING, **changes: Any) -> str:
    c = _claims(valid)
    args: dict[str, Any] = dict(
        session_id=uuid.UUID(c["sub"]),
        tenant_id=uuid.UUID(c["tenant_id"]),
        agent_id=uuid.UUID(c["agent_id"]),
        mode=c["mode"],
    )
    args.update(changes)
    return mint(keyring, **args)[0]


SECRET = KEYRING.secrets["k1"]
OLD = Keyring.parse("k0=" + "0" * 40)  # the secret before k1: rotated out
STRANGER = uuid.uuid4()

# name -> (make a bad token from a valid one, expected status, words of the reason)
BAD_TOKENS: dict[str, tuple[Callable[[str], str], int, str]] = {
    "bad signature": (
        lambda t: _remint(t, Keyring.parse("k1=" + "X" * 40)),
        401,
        "bad signature",
    ),
    "alg none": (
        lambda t: f"{_b64url({'alg': 'none', 'kid': 'k1'})}.{_b64url(_claims(t))}.",
        401,
        "algorithm",
    ),
    "HS/RS confusion": (
        lambda t: _sign({"alg": "RS256", "kid": "k1", "typ": "JWT"}, _claims(t), SECRET),
        401,
        "algorithm",
    ),
    "wrong iss": (lambda t: _remint(t, issuer="someone-else"), 401, "issuer"),
    "expired": (lambda t: _remint(t, now=time.time() - 400), 401, "expired"),
    "no exp": (
        lambda t: _sign(
            {"alg": "HS256", "kid": "k1", "typ": "JWT"},
            {k: v for k, v in _claims(t).items() if k != "exp"},
            SECRET,
        ),
        401,
        "missing claim exp",
    ),
    "iat in the future": (lambda t: _remint(t, now=time.time() + 600), 401, "future"),
    "unknown tenant": (lambda t: _remint(t, tenant_id=STRANGER), 403, "tenant"),
    "unknown kid": (lambda t: _remint(t, Keyring.parse("zz=" + "Z" * 40)), 401, "kid"),
    "rotated-out secret": (lambda t: _remint(t, OLD), 401, "kid"),
}


async def connect(h: Harness, carrier: str, token: str, path: str = "/v1/voice") -> Any:
    """Open a browser call; return the open connection's context manager."""
    url, protocols, headers = connect_args(carrier, h.ws_url + path, token)
    return trio_websocket.open_websocket_url(url, subprotocols=protocols, extra_headers=headers)


async def refused(h: Harness, carrier: str, token: str, path: str = "/v1/voice") -> tuple[int, str]:
    with pytest.raises(trio_websocket.ConnectionRejected) as caught:
        async with await connect(h, carrier, token, path):
            pass
    rejected = caught.value
    assert rejected.status_code is not None
    return rejected.status_code, json.loads(rejected.body or b"{}").get("error", "")


async def hang_up_and_wait(h: Harness, session_id: str) -> None:
    with trio.fail_after(20):
        while h.rows("select status from voice_sessions where id = %s", session_id) != [("ended",)]:
            await trio.sleep(0.05)


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_token_matrix_only_the_valid_token_connects(
    carrier: str,
    store: Store,
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = await start_harness(nursery, store, database_url, tmp_path, monkeypatch)
    other_tenant = await trio.to_thread.run_sync(store.ensure_tenant, "bravo")
    valid = await h.new_session()
    bad = {name: make(valid["token"]) for name, (make, _, _) in BAD_TOKENS.items()}
    bad["another tenant's"] = _remint(valid["token"], tenant_id=other_tenant)
    before = h.snapshot()

    for name, token in bad.items():
        with structlog.testing.capture_logs() as logs:
            status, reason = await refused(h, carrier, token)
        expected_status, words = BAD_TOKENS.get(name, (None, 403, "session"))[1:]
        assert (status, words in reason) == (expected_status, True), (name, status, reason)
        rejections = [e for e in logs if e["event"] == "auth.rejected"]
        assert len(rejections) == 1 and rejections[0]["carrier"] == carrier, name
        assert token not in repr(logs), name
        assert h.snapshot() == before, name
        assert h.calls_started == [], name

    # The valid token connects; the server answers switchboard.v1, never the token.
    async with await connect(h, carrier, valid["token"]) as ws:
        assert ws.subprotocol == ("switchboard.v1" if carrier == "subprotocol" else None)
        (session,) = await messages(ws, lambda m: len(m) == 1, 10)
        assert session["event"] == "session" and session["session_id"] == valid["session_id"]
    await hang_up_and_wait(h, valid["session_id"])
    assert [str(s) for s in h.calls_started] == [valid["session_id"]]

    # Its jti is spent: a second use is refused and changes nothing.
    after_call = h.snapshot()
    assert await refused(h, carrier, valid["token"]) == (401, "token already used")
    assert h.snapshot() == after_call and len(h.calls_started) == 1


async def test_the_stream_path_must_name_the_tokens_session(
    store: Store,
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = await start_harness(nursery, store, database_url, tmp_path, monkeypatch)
    first, second = await h.new_session(), await h.new_session()
    before = h.snapshot()
    path = f"/app/voice/stream/{second['session_id']}"
    assert await refused(h, "query", first["token"], path) == (
        403,
        "the token is for another session",
    )
    assert await refused(h, "query", "", path) == (401, "a session token is required")
    assert h.snapshot() == before and h.calls_started == []
    async with await connect(h, "query", second["token"], path) as ws:
        (session,) = await messages(ws, lambda m: len(m) == 1, 10)
        assert session["session_id"] == second["session_id"]
    await hang_up_and_wait(h, second["session_id"])


async def test_rotation_keeps_a_call_in_flight_and_refuses_old_tokens_at_the_end(
    store: Store,
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = Keyring.parse("a=" + "A" * 40)
    b_signs_a_verifies = Keyring.parse("b=" + "B" * 40 + ",a=" + "A" * 40)
    b_only = Keyring.parse("b=" + "B" * 40)
    h = await start_harness(nursery, store, database_url, tmp_path, monkeypatch, keyring=a)
    in_flight = await h.new_session()
    assert jwt.get_unverified_header(in_flight["token"])["kid"] == "a"
    # Minted by A before the rotation, used after each step:
    from_a = [await h.new_session(), await h.new_session()]

    async with await connect(h, "subprotocol", in_flight["token"]) as ws:
        await messages(ws, lambda m: any(x.get("event") == "audio_end" for x in m), 15)

        h.rt.keyring = b_signs_a_verifies
        signed_by_b = await h.new_session()
        assert jwt.get_unverified_header(signed_by_b["token"])["kid"] == "b"
        for session in (from_a[0], signed_by_b):
            async with await connect(h, "authorization", session["token"]) as other:
                await messages(other, lambda m: len(m) == 1, 10)

        h.rt.keyring = b_only
        assert await refused(h, "query", from_a[1]["token"]) == (401, "unknown signing key (kid)")

        # The call admitted under A still runs: it hears the caller and answers.
        pcm = synthesize_at("what are your opening hours", 24000).tobytes() + bytes(24000 * 3)
        for i in range(0, len(pcm), 960):
            await ws.send_message(json.dumps({"event": "audio", "payload": b64(pcm[i : i + 960])}))
        seen = await messages(
            ws,
            lambda m: any(x.get("event") == "transcript" and x["role"] == "agent" for x in m),
            30,
        )
        (answer,) = [x for x in seen if x.get("event") == "transcript" and x["role"] == "agent"]
        assert "Monday to Friday" in answer["text"]
    assert h.rows("select count(*) from session_token_uses") == [(3,)]


def test_find_tokens_reads_each_carrier_and_never_the_protocol_name() -> None:
    headers = {"sec-websocket-protocol": "switchboard.v1, t1", "authorization": "Bearer t2"}
    assert find_tokens(headers, {"token": ["t3"]}) == [
        ("subprotocol", "t1"),
        ("authorization", "t2"),
        ("query", "t3"),
    ]
    assert find_tokens({"sec-websocket-protocol": "switchboard.v1"}, {}) == []
    assert find_tokens({"authorization": "Basic dTpw"}, {}) == []


def test_spent_tokens_are_tenant_isolated_and_written_only_by_the_definer_function(
    database_url: str,
) -> None:
    import psycopg

    with psycopg.connect(database_url) as owner:
        (rls,) = owner.execute(
            "select relrowsecurity and relforcerowsecurity from pg_class"
            " where relname = 'session_token_uses'"
        ).fetchone() or (None,)
        function = owner.execute(
            "select prosecdef, proconfig, has_function_privilege('public', oid, 'EXECUTE')"
            " from pg_proc where proname = 'switchboard_consume_token'"
        ).fetchone()
        may_insert = owner.execute(
            "select has_table_privilege('switchboard_app', 'session_token_uses', 'INSERT')"
        ).fetchone()
    assert rls is True
    assert function == (True, ["search_path=public, pg_temp"], False)
    assert may_insert == (False,)


def test_a_jti_is_spent_exactly_once_under_concurrency(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime, timedelta

    from switchboard.orchestrator.agents import AgentSpec

    agent_id = store.apply_agent(AgentSpec(name="desk", tenant="acme", greeting="Hi", intents=()))
    tenant_id = store.ensure_tenant("acme")
    session_id = store.create_session(tenant_id, agent_id, transport="browser")
    expires = datetime.now(UTC) + timedelta(minutes=5)

    def spend(_: int) -> str:
        return store.consume_token(
            "jti-1", tenant_id=tenant_id, session_id=session_id, agent_id=agent_id,
            expires_at=expires,
        )  # fmt: skip

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(spend, range(8)))
    assert outcomes == ["ok"] + ["reused"] * 7
    wrong_agent = store.consume_token(
        "jti-2", tenant_id=tenant_id, session_id=session_id, agent_id=uuid.uuid4(),
        expires_at=expires,
    )  # fmt: skip
    assert wrong_agent == "unknown_session"
