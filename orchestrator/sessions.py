"""``POST /v1/sessions``: a tenant asks for a browser (or client) call and gets a token.

Request (``Authorization: Bearer <tenant API key>``), JSON::

    {"agent_id": "<uuid or agent name>",   required
     "conversation_id": "<text>",          optional, copied into the token
     "test_mode": false,                   optional; true: the local provider
     "mode": "local"}                      optional; a provider mode for this call

Answer ``201``::

    {"session_id": "<uuid>", "token": "<JWT>", "expires_at": <unix seconds>,
     "ws_url": "ws(s)://.../v1/voice", "mode": "local", "mode_source": "agent"}

The token (see :mod:`.tokens`) admits one call, within 5 minutes. The call
runs on the agent's fallback chain with ``mode`` first: the request's
``mode``, else ``local`` for a ``test_mode`` session, else the runtime
configuration's chain or the agent's own, as they are when the call starts
(:mod:`.call_chain`). The answer's ``mode`` and ``mode_source`` say what leads
the chain as of now.

Errors (JSON ``{"error": "..."}``): 401 without a valid API key (logged as
``auth.rejected``), 400 for a malformed body, 404 for an agent the tenant does
not have, 422 for a requested mode that cannot run here (a chain's head that
cannot run is skipped at the call, as any link is), 503 while the server drains,
and 503 with ``Retry-After`` while PostgreSQL is away (see :mod:`.outage`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
import trio
from quart import jsonify, request

from switchboard.actors.providers import unavailable_reason

from .agents import MODES
from .call_chain import chain_for_call
from .errors import StorageError
from .outage import OUTAGE_REASON, RETRY_AFTER_DATABASE_S, database_answers, refuse
from .runtime import Runtime
from .tokens import mint

log = structlog.get_logger("switchboard.sessions")

MAX_CONVERSATION_ID = 200
MAX_AGENT_REF = 200
"""An ``agent_id`` (a UUID or an agent's name) longer than this is refused, not echoed."""
VOICE_PATH = "/v1/voice"
DOOR = "sessions"


class SessionRequestError(ValueError):
    """The request body is not a session request; the message says why."""


@dataclass(frozen=True)
class SessionRequest:
    """A parsed ``POST /v1/sessions`` body (see the module docstring)."""

    agent: str
    conversation_id: str | None = None
    test_mode: bool = False
    mode: str | None = None

    @classmethod
    def parse(cls, body: Any) -> SessionRequest:
        """Raises SessionRequestError for anything but the documented shape."""
        if not isinstance(body, dict):
            raise SessionRequestError("the body must be a JSON object")
        unknown = set(body) - {"agent_id", "conversation_id", "test_mode", "mode"}
        if unknown:
            named = ", ".join(repr(k[:40]) for k in sorted(unknown)[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise SessionRequestError(f"unknown field(s): {named}{more}")
        agent = body.get("agent_id")
        if not isinstance(agent, str) or not agent.strip():
            raise SessionRequestError("agent_id (an agent's id or name) is required")
        if len(agent) > MAX_AGENT_REF:
            raise SessionRequestError(f"agent_id has at most {MAX_AGENT_REF} characters")
        conversation = body.get("conversation_id")
        if conversation is not None and (
            not isinstance(conversation, str) or not 0 < len(conversation) <= MAX_CONVERSATION_ID
        ):
            raise SessionRequestError(
                f"conversation_id must be a string of 1 to {MAX_CONVERSATION_ID} characters"
            )
        test_mode = body.get("test_mode", False)
        if not isinstance(test_mode, bool):
            raise SessionRequestError("test_mode must be true or false")
        mode = body.get("mode")
        if mode is not None and mode not in MODES:
            raise SessionRequestError(f"mode must be one of {', '.join(MODES)}")
        return cls(agent.strip(), conversation, test_mode, mode)


class SessionError(Exception):
    """A session could not be made; ``status`` and ``message`` are the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def create_session(rt: Runtime, tenant_id: uuid.UUID, req: SessionRequest) -> dict[str, Any]:
    """Create the session row and mint its token; the ``201`` body.

    Raises:
        SessionError: 404 (no such agent), 422 (mode cannot run here), 503 (draining).
    """
    if rt.draining:
        raise SessionError(503, "the server is draining; try another instance")
    agent_id = await _agent_id(rt, tenant_id, req.agent)
    agent = await trio.to_thread.run_sync(rt.store.get_agent, tenant_id, agent_id)
    chosen = chain_for_call(
        agent,
        session_mode=req.mode,
        test_mode=req.test_mode,
        configured=rt.configured_chain(),
    )
    mode = chosen.first
    reason = unavailable_reason(mode, rt.resources.endpoints)
    if reason is not None and chosen.source == "session":  # asked for: say it cannot be
        raise SessionError(422, reason)
    session_id = await trio.to_thread.run_sync(
        partial(rt.store.create_session, tenant_id, agent_id, transport="browser")
    )
    token, claims = mint(
        rt.keyring,
        session_id=session_id,
        tenant_id=tenant_id,
        agent_id=agent_id,
        mode=mode,
        test_mode=req.test_mode,
        mode_source=chosen.source,
        conversation_id=req.conversation_id,
        issuer=rt.settings.token_issuer,
    )
    log.info(
        "session created",
        session_id=str(session_id),
        agent=agent.name,
        mode=mode,
        mode_source=chosen.source,
    )
    return {
        "session_id": str(session_id),
        "token": token,
        "expires_at": claims.expires_at,
        "ws_url": rt.settings.websocket_base_url + VOICE_PATH,
        "mode": mode,
        "mode_source": chosen.source,
    }


async def _agent_id(rt: Runtime, tenant_id: uuid.UUID, agent: str) -> uuid.UUID:
    try:
        agent_id = uuid.UUID(agent)
    except ValueError:
        found = await trio.to_thread.run_sync(rt.store.agent_id_by_name, tenant_id, agent)
        if found is None:
            raise SessionError(404, f"no agent {agent!r}") from None
        return found
    try:
        await trio.to_thread.run_sync(rt.store.get_agent, tenant_id, agent_id)
    except StorageError:
        if not await database_answers(rt.store):
            raise  # not "no such agent": the database is away
        raise SessionError(404, f"no agent {agent!r}") from None
    return agent_id


async def tenant_for_request(rt: Runtime) -> uuid.UUID | None:
    """The tenant whose API key the request's ``Authorization: Bearer`` carries, or None."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return await trio.to_thread.run_sync(rt.store.tenant_for_api_key, key.strip())


async def post_sessions(rt: Runtime) -> Any:
    """``POST /v1/sessions``."""
    try:
        tenant_id = await tenant_for_request(rt)
        if tenant_id is None:
            log.warning("auth.rejected", door=DOOR, reason="missing or unknown API key")
            return jsonify(
                {"error": "a valid tenant API key is required (Authorization: Bearer)"}
            ), 401
        return await _answer(rt, tenant_id, await request.get_json(force=True, silent=True))
    except StorageError as exc:
        return database_unavailable(rt, DOOR, exc)


async def post_practice_session(rt: Runtime) -> Any:
    """``POST /practice/session``: development mode only, as the development tenant."""
    if rt.dev_api_key is None:
        return jsonify({"error": "not in development mode: paste a session token"}), 404
    try:
        tenant_id = await trio.to_thread.run_sync(rt.store.tenant_for_api_key, rt.dev_api_key)
        if tenant_id is None:
            return jsonify({"error": "the development API key is gone; restart the server"}), 503
        return await _answer(rt, tenant_id, await request.get_json(force=True, silent=True))
    except StorageError as exc:
        return database_unavailable(rt, "practice", exc)


def database_unavailable(rt: Runtime, door: str, exc: StorageError) -> Any:
    """503, ``{"error": ...}`` and ``Retry-After``: the database is away (logged, counted)."""
    refuse(rt.admission.metrics, door, exc)
    headers = {"Retry-After": str(RETRY_AFTER_DATABASE_S)}
    return jsonify({"error": OUTAGE_REASON}), 503, headers


async def _answer(rt: Runtime, tenant_id: uuid.UUID, body: Any) -> Any:
    try:
        req = SessionRequest.parse(body)
        return jsonify(await create_session(rt, tenant_id, req)), 201
    except SessionRequestError as exc:
        return jsonify({"error": str(exc)}), 400
    except SessionError as exc:
        return jsonify({"error": exc.message}), exc.status
