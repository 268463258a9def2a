"""Who may open ``/v1/realtime``: a tenant API key with one of its agents, or a session token.

Run against a real PostgreSQL (the ``store`` fixture). The session-token path
goes through the route's ``check_token`` seam, here backed by real HS256
tokens and :func:`switchboard.orchestrator.tokens.verify`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID, uuid4

from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.realtime_routes import (
    RealtimeAdmission,
    Refusal,
    TokenCheck,
    authenticate,
)
from switchboard.orchestrator.store import Store
from switchboard.orchestrator.tokens import (
    Keyring,
    SessionClaims,
    TokenRejectedError,
    mint,
    verify,
)

KEYRING = Keyring.generate()


def agent_of(store: Store, tenant: str) -> tuple[UUID, UUID]:
    spec = parse_agent_yaml(
        f"name: desk\ntenant: {tenant}\ngreeting: hi\nintents:\n"
        "  - name: hours\n    phrases: [hours]\n    reply: nine to five\n"
    )
    agent_id = store.apply_agent(spec)
    return store.ensure_tenant(tenant), agent_id


def bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


def query(**params: str) -> dict[str, list[str]]:
    return {k: [v] for k, v in params.items()}


async def check_token(
    headers: Mapping[str, str], _query: Mapping[str, Sequence[str]]
) -> SessionClaims | Refusal:
    token = headers["authorization"].partition(" ")[2]
    try:
        return verify(KEYRING, token)
    except TokenRejectedError as exc:
        return Refusal(exc.status, exc.reason)


async def test_a_tenant_api_key_admits_one_of_its_own_agents_named_in_the_query(
    store: Store,
) -> None:
    tenant_id, agent_id = agent_of(store, "acme")
    key = store.create_api_key(tenant_id)
    admitted = await authenticate(bearer(key), query(agent_id=str(agent_id)), store, None)
    assert isinstance(admitted, RealtimeAdmission)
    assert (admitted.tenant_id, admitted.agent_id, admitted.session_id) == (
        tenant_id,
        agent_id,
        None,
    )
    assert admitted.agent.name == "desk" and admitted.via == "api_key"
    by_name = await authenticate(bearer(key), query(agent_id="desk"), store, None)
    assert isinstance(by_name, RealtimeAdmission) and by_name.agent_id == agent_id


async def test_api_key_refusals(store: Store) -> None:
    tenant_id, agent_id = agent_of(store, "acme")
    _, other_agent = agent_of(store, "globex")
    key = store.create_api_key(tenant_id)
    revoked = store.create_api_key(tenant_id)
    store.revoke_api_key(tenant_id, revoked)

    async def refusal(headers: dict[str, str], q: dict[str, list[str]]) -> tuple[int, str]:
        result = await authenticate(headers, q, store, None)
        assert isinstance(result, Refusal)
        return result.status, result.reason

    assert (await refusal({}, query(agent_id=str(agent_id))))[0] == 401
    assert (await refusal(bearer(revoked), query(agent_id=str(agent_id))))[0] == 401
    assert (await refusal(bearer(key), {}))[0] == 400
    assert (await refusal(bearer(key), query(agent_id="x" * 201)))[0] == 400
    assert await refusal(bearer(key), query(agent_id="no-such-agent")) == (
        403,
        "no such agent for this tenant",
    )
    assert await refusal(bearer(key), query(agent_id=str(other_agent))) == (
        403,
        "no such agent for this tenant",
    )
    with store.db.tenant(tenant_id) as cur:  # nothing was written for any refusal
        cur.execute("SELECT count(*) FROM voice_sessions")
        assert cur.fetchone() == (0,)


async def test_a_session_token_admits_its_own_agent_and_session(store: Store) -> None:
    tenant_id, agent_id = agent_of(store, "acme")
    session_id = uuid4()
    token, _ = mint(
        KEYRING, session_id=session_id, tenant_id=tenant_id, agent_id=agent_id, mode="local"
    )
    checker: TokenCheck = check_token
    admitted = await authenticate(bearer(token), {}, store, checker)
    assert isinstance(admitted, RealtimeAdmission)
    assert (admitted.agent_id, admitted.session_id, admitted.via) == (
        agent_id,
        session_id,
        "session_token",
    )

    _, other_agent = agent_of(store, "acme-2")
    mismatch = await authenticate(bearer(token), query(agent_id=str(other_agent)), store, checker)
    assert mismatch == Refusal(403, "agent_id is not the session token's agent")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert await authenticate(bearer(forged), {}, store, checker) == Refusal(401, "bad signature")
    assert await authenticate(bearer(token), {}, store, None) == Refusal(
        401, "session tokens are not accepted on this server"
    )
